"""`models` misused: old preset names, `models` kept fast (synth and bench bad values: test_policy.py; bench gpu
without a GPU: tests/analysis/test_bench_gpu.py)."""

from __future__ import annotations

import subprocess
import sys
import time

from .corpus import run_cli


# ------------------------------------------------------------------------------------------------- models
def test_old_preset_names_resolve_to_the_new_ones(capsys):
    from matchdetr import presets

    for old, new in presets.ALIASES.items():
        assert presets.get(old).preset == new and new in presets.names() and old not in presets.names()
    o = run_cli(["models", "--presets", "sam-detr-r50-dc5,deformable-detr-r50-refine"], capsys)
    assert o.code == 0 and "sam-detr-dc5-r50" in o.out and "deformable-detr-refine-r50" in o.out
    assert all(n.endswith(("-r50", "-swin-t", "-swin-l", "-tiny")) for n in presets.names())  # the backbone last


def test_models_prints_in_under_two_seconds(cli_env):
    from matchdetr import presets
    from matchdetr.analysis.param_count import count_parameters, parameter_counts

    parameter_counts()  # fills this session's cache (MATCHDETR_CACHE, set in conftest)
    start = time.time()
    code = "import sys; from matchdetr.cli import main; rc = main(['models']); assert 'torch' not in sys.modules; sys.exit(rc)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env, timeout=60)
    assert done.returncode == 0 and time.time() - start < 2.0, (time.time() - start, done.stderr)
    real = matchdetr_build_count("deformable-detr-tiny")
    assert count_parameters("deformable-detr-tiny", 91) == real  # the meta-device count is the real one
    assert f"{real[0] / 1e6:7.2f}M" in next(l for l in done.stdout.splitlines() if l.startswith("deformable-detr-tiny "))
    listed = [line.split()[0] for line in done.stdout.splitlines()[2:-2]]
    assert listed == presets.names()


def matchdetr_build_count(name: str) -> tuple[int, int]:
    import matchdetr

    model = matchdetr.build(name, num_classes=91)
    return sum(p.numel() for p in model.parameters()), sum(p.numel() for p in model.parameters() if p.requires_grad)
