"""matchdetr: DETR-family object detectors built around better matching, in pure PyTorch."""

__version__ = "0.1.0"
