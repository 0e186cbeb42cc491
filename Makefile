# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both create or reuse .venv, install torch only when it is not importable (a user with CUDA installs theirs
# first; the venv sees system packages), then the package itself.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test test-slow clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	@$(PY) -m pip install -q -e ".[dev]"
	@touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m matchdetr demo

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

clean:
	rm -rf $(VENV) runs build *.egg-info
