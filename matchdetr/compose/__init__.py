"""The composition root: the only code that reads config objects and wires backbone, neck, encoder, fusion,
queries, decoder, head, post-processor, matcher and criterion from them, and opens weight files for the
backbone. ``models/``, ``losses/`` and ``matching/`` below it take plain typed arguments.
"""

from .backbone import build_backbone
from .criterion import CLASS_LOSSES, build_criterion, build_matcher
from .detectors import build_model
from .model import from_config

__all__ = ["CLASS_LOSSES", "build_backbone", "build_criterion", "build_matcher", "build_model", "from_config"]
