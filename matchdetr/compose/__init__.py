"""The composition root: the only code that reads model configs and wires backbone, neck, encoder, fusion,
queries, decoder, head, post-processor, matcher and criterion from them, and opens weight files for the
backbone. ``models/``, ``losses/`` and ``matching/`` below it take plain typed arguments.

- ``model_config``: the model section of the config, one table per kind of component; ``archs``: the
  architectures' own configs;
- ``detectors`` (+ ``sam_detr``, ``mask_dino``): one function per architecture; ``backbone``: a backbone and
  its weight file; ``criterion``: the matcher and the criterion; ``model``: a Detector from a whole Config.

The builders are imported on first use (``from matchdetr.compose import build_criterion``): ``matchdetr.config``
imports ``model_config``, and the builders import ``matchdetr.config``, so this package imports none of them
when it loads.
"""

from importlib import import_module
from typing import Any

# name -> submodule, imported on first use (PEP 562), so that importing a submodule does not run the others
_EXPORTS = {"build_backbone": "backbone", "build_criterion": "criterion", "build_matcher": "criterion",
            "build_model": "detectors", "build_detector": "model"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
