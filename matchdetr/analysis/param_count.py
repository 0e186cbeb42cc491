"""Parameter counts of presets, without allocating the models, cached per preset.

``matchdetr models`` lists ~50 presets; building each for real (random init of ResNet-50s and transformers)
took 29 s on 2 cores. Here a model is built on the meta device, where a build only records shapes. Two kinds
of calls are steered around the meta device's gaps, because its Python fallbacks import ``torch._dynamo``
(1-2 s) for values a meta tensor does not hold anyway: initialisers are skipped and ``arange`` (used to lay
out fixed initial patterns) runs on the CPU. The counts are exact: the same ``build_model`` and the same
``requires_grad`` flags (frozen stages) as a real build; a test holds them equal.

Counts are cached in ``$MATCHDETR_CACHE/param_counts.json`` (default ``~/.cache/matchdetr``) under a digest of
the preset's model config, the number of classes, the source of ``matchdetr/models`` and the torch version, so
a changed model or preset is counted again and a cached listing needs no torch import at all (0.2 s). The
cache holds the finished table lines (``flops.ModelCost.row``, the one formatter), so the digest covers
``flops.py`` (its paper figures) too.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any

_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
_FLOPS_FILE = Path(__file__).resolve().parent / "flops.py"
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
    on the meta device (not cached; see :func:`parameter_table`)."""
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
    """What a listing depends on besides the config: the model code, the table's format and paper figures
    (``flops.py``) and the torch version."""
    h = hashlib.sha256()
    for path in sorted(_MODELS_DIR.rglob("*.py")) + [_FLOPS_FILE]:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
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


def parameter_table(names: list[str], num_classes: int = 91) -> list[str]:
    """The lines of ``matchdetr models``: ``flops.HEADER`` and one ``flops.ModelCost.row()`` per preset
    (without GFLOPs). Cached lines are reused; the others are counted on the meta device and cached."""
    from .. import presets

    code = _code_digest()
    keys = {}
    for name in names:
        model = presets.get(name).model
        model.backbone.weights = ""
        keys[name] = hashlib.sha256(f"{code}|{name}|{num_classes}|{json.dumps(model.__dict__, default=vars, sort_keys=True)}"
                                    .encode()).hexdigest()
    path = _cache_path()
    cache = _read_cache(path)
    header_key = f"header-{code}"
    missing = [n for n, k in keys.items() if not isinstance(cache.get(k), str)] + (
        [] if isinstance(cache.get(header_key), str) else [None])
    if missing:
        from .flops import HEADER, ModelCost  # imports torch: only when something is not cached

        cache[header_key] = HEADER
        for name in (n for n in missing if n is not None):
            cache[keys[name]] = ModelCost(name, *count_parameters(name, num_classes), None).row()
        from ..io.files import atomic_write_json

        try:
            atomic_write_json(path, cache)
        except OSError:  # a read-only home: counting again next time is the only cost
            pass
    return [cache[header_key]] + [cache[keys[n]] for n in names]
