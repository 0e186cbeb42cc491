"""matchdetr: DETR-family object detectors built around better matching, in pure PyTorch.

    import matchdetr
    model = matchdetr.build("stable-dino-tiny")                       # a matchdetr.Model
    result = model.fit(data="runs/synthetic", out="runs/exp", iters=600)
    model = matchdetr.load("runs/exp")
    model.predict(["image.jpg"], threshold=0.3)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "Detector", "Model", "__version__", "build", "list_presets", "load", "resume",
           "train"]

# name -> the module that defines it, imported on first use (PEP 562), so that torch-free parts (`matchdetr
# predict --model x.onnx`, which runs on onnxruntime alone, and `matchdetr.inference.onnx_predict`) can be
# imported where torch is not installed.
_LAZY = {"build": "api", "load": "api", "train": "api", "resume": "api", "Model": "model", "Config": "config",
         "ConfigError": "config", "Detector": "models.detector"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    if name == "list_presets":
        from .presets import names

        return names
    raise AttributeError(f"module 'matchdetr' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(__all__)
