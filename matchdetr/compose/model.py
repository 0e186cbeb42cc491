"""The Detector a whole Config describes, after the config's checks (what ``matchdetr.build`` wraps in a
:class:`~matchdetr.model.Model` with the config and the label map)."""

from __future__ import annotations

from ..config import Config
from ..config.checks import check_model
from ..models.detector import Detector
from .detectors import build_model


def build_detector(cfg: Config) -> Detector:
    """Check ``cfg.model`` (num_queries=0 and the like: one line naming the key, not an error deep in a layer),
    then build it."""
    check_model(cfg.model)
    return build_model(cfg.model)
