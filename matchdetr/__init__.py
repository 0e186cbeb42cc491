"""matchdetr: DETR-family object detectors built around better matching, in pure PyTorch.

    import matchdetr
    det = matchdetr.build("detr-tiny", num_classes=10)
    det = matchdetr.load("runs/demo")
    det.predict(["image.jpg"], threshold=0.3)
"""

from .api import build, load
from .models.detector import Detector
from .presets import names as list_presets

__version__ = "0.1.0"
__all__ = ["build", "load", "Detector", "list_presets", "__version__"]
