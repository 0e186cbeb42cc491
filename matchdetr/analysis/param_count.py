"""Parameter counts of presets, without allocating the models, cached per preset.

``matchdetr models`` lists ~50 presets; building each for real (random init of ResNet-50s and transformers)
took 29 s on 2 cores. Here a model is built on the meta device, where a build only records shapes. Two kinds
of calls are steered around the meta device's gaps, because its Python fallbacks import ``torch._dynamo``
(1-2 s) for values a meta tensor does not hold anyway: initialisers are skipped and ``arange`` (used to lay
out fixed initial patterns) runs on the CPU. The counts are exact: the same ``build_model`` and the same
``requires_grad`` flags (frozen stages) as a real build; a test holds them equal.

Counts are cached in ``$MATCHDETR_CACHE/param_counts.json`` (default ``~/.cache/matchdetr``) under a digest of
the code that defines presets and models (``_COUNTED``), the torch version, the preset and the number of
classes, with the list of preset names beside them: a change anywhere there counts again, and a cached
listing imports neither torch nor a preset (0.2 s, where importing torch alone takes 1.3 s).
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGE = Path(__file__).resolve().parent.parent
# What a preset's parameter count can depend on: the presets, their configs and everything they build.
_COUNTED = ("presets", "config", "compose", "models", "losses", "matching", "ops", "fields.py", "structures.py",
            "boxes.py", "analysis/param_count.py")
# In-place random fills (by name: the function handed over is the C-level TensorBase method), and every
# ``torch.nn.init`` initialiser (which hands its tensor over as a keyword): on a meta tensor each is a no-op.
_RANDOM_FILLS = {"normal_", "uniform_", "exponential_", "log_normal_", "cauchy_", "geometric_", "random_",
                 "bernoulli_", "erfinv_"}


def _meta_build_mode() -> Any:
    """A TorchFunctionMode, entered inside ``torch.device("meta")``, that skips initialisers of meta tensors
    and runs ``arange`` on the CPU (defined here so that importing this module does not import torch)."""
    import torch
    from torch.overrides import TorchFunctionMode

    class MetaBuild(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            kwargs = kwargs or {}
            if func is torch.arange and kwargs.get("device") is None:
                return func(*args, **{**kwargs, "device": "cpu"}).to("meta")
            if getattr(func, "__name__", "") in _RANDOM_FILLS or getattr(func, "__module__", "") == "torch.nn.init":
                target = args[0] if args else kwargs.get("tensor")
                if isinstance(target, torch.Tensor) and target.is_meta:
                    return target
            return func(*args, **kwargs)

    return MetaBuild()


def count_parameters(name: str, num_classes: int = 91) -> tuple[int, int]:
    """``(parameters, trainable parameters)`` of preset ``name`` (or an old name) with ``num_classes``, built
    on the meta device (not cached; see :func:`parameter_counts`)."""
    import torch

    from .. import presets
    from ..compose import build_model

    cfg = presets.get(name)
    cfg.model.num_classes = num_classes
    cfg.model.backbone.weights = ""  # a weights file would be read into meta tensors: pointless work
    with torch.device("meta"), _meta_build_mode():
        model = build_model(cfg.model)
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return params, trainable


def _cache_path() -> Path:
    return Path(os.environ.get("MATCHDETR_CACHE") or Path.home() / ".cache" / "matchdetr") / "param_counts.json"


def _code_digest() -> str:
    """What a count depends on besides the preset's name: the code of ``_COUNTED`` and the torch version."""
    h = hashlib.sha256()
    files = [f for part in _COUNTED for f in ((_PACKAGE / part).rglob("*.py") if (_PACKAGE / part).is_dir()
                                               else [_PACKAGE / part])]
    for path in sorted(files):
        h.update(path.relative_to(_PACKAGE).as_posix().encode() + b"\0" + path.read_bytes())
    try:
        h.update(metadata.version("torch").encode())
    except metadata.PackageNotFoundError:
        pass
    return h.hexdigest()


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def parameter_counts(names: list[str] | None = None, num_classes: int = 91) -> dict[str, tuple[int, int]]:
    """``{preset: (parameters, trainable parameters)}`` for ``names`` (default: every preset, in the registry's
    order), what ``matchdetr models`` lists. Cached counts are reused; the others are counted on the meta device
    and cached."""
    code = _code_digest()
    path = _cache_path()
    cache = _read_cache(path)
    names_key, dirty = f"names|{code}", False
    if names is None:
        listed = cache.get(names_key)
        if isinstance(listed, list) and all(isinstance(n, str) for n in listed):
            names = listed
        else:
            from .. import presets

            names = cache[names_key] = presets.names()
            dirty = True
    keys = {n: hashlib.sha256(f"{code}|{n}|{num_classes}".encode()).hexdigest() for n in names}
    for name in (n for n, k in keys.items() if not _is_count(cache.get(k))):
        cache[keys[name]] = list(count_parameters(name, num_classes))
        dirty = True
    if dirty:
        from ..io.files import atomic_write_json

        try:
            atomic_write_json(path, cache)
        except OSError:  # a read-only home: counting again next time is the only cost
            pass
    return {n: (int(cache[keys[n]][0]), int(cache[keys[n]][1])) for n in names}


def _is_count(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value)
