"""matchdetr: DETR-family object detectors built around better matching, in pure PyTorch.

    import matchdetr
    det = matchdetr.build("detr-tiny", num_classes=10)
    det = matchdetr.load("runs/demo")
    det.predict(["image.jpg"], threshold=0.3)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["build", "load", "Detector", "list_presets", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use (PEP 562), so that torch-free parts (`matchdetr predict --model x.onnx`, which runs
    # on onnxruntime alone, and `matchdetr.inference.onnx_predict`) can be imported where torch is not installed.
    if name in ("build", "load"):
        from . import api

        return getattr(api, name)
    if name == "Detector":
        from .models.detector import Detector

        return Detector
    if name == "list_presets":
        from .presets import names

        return names
    raise AttributeError(f"module 'matchdetr' has no attribute '{name}'")
