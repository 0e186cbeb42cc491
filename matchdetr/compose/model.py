"""A Detector from a whole Config, with the config and label map attached (what ``matchdetr.build`` returns and
``save`` writes)."""

from __future__ import annotations

from ..config import Config, ConfigError
from ..config.checks import check_model
from ..data.label_map import LabelMap
from ..models.detector import Detector
from .detectors import build_model


def from_config(cfg: Config, label_map: LabelMap | None = None) -> Detector:
    """Build the Detector a Config describes, with a label map (default: labels are their own ids)."""
    check_model(cfg.model)  # num_queries=0 and the like: one line naming the key, not an error deep in a layer
    model = build_model(cfg.model)
    model.config = cfg
    if label_map is None:
        label_map = LabelMap(list(range(cfg.model.num_classes)), [f"class_{i}" for i in range(cfg.model.num_classes)])
    if len(label_map) != cfg.model.num_classes:
        raise ConfigError(f"label map has {len(label_map)} classes but model.num_classes is {cfg.model.num_classes}")
    model.label_map = label_map
    return model
