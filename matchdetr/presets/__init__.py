"""Named model configurations. A variant is a function returning a Config composed from shared parts.

Full-size presets follow the published ResNet-50 COCO recipes; ``-tiny`` presets keep the architecture and
shrink the numbers (an ImageNet-pretrained EfficientNet-Lite0, hidden 128, 3+3 layers, 100 queries, ~256 px
images) so they learn in CPU minutes on the synthetic benchmark (docs/benchmarks.md).

One module per family: ``detr_family`` (DETR, Deformable-DETR, DAB, DN, DINO, H-DETR), ``stable`` (Stable-*),
``sam_detr`` (SAM-DETR, SMCA, SAM-DETR++). Each registers its presets with :func:`registry.preset` when
imported below.
"""

from __future__ import annotations

DEFAULT_TINY = "stable-dino-tiny"  # the preset `matchdetr demo` trains: the best tiny preset so far (docs/benchmarks.md)

# The lookups load the family modules on first use (registry.py), so importing this package (the command line's
# parser does, for DEFAULT_TINY) imports no torch: the ONNX-only path runs without it.
from .registry import ALIASES, canonical, get, names, preset  # noqa: E402,F401  (the public lookups)
