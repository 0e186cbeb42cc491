"""Start a model from a checkpoint trained on another label set (fine-tuning).

    det = matchdetr.build("dino-tiny", num_classes=10)
    print(load_pretrained(det, "coco_dino.safetensors"))   # -> one line saying what was kept and re-initialised

Every tensor is copied from the checkpoint except the ones whose meaning depends on the class set: the class
heads (every ``class_embed``) and, with denoising, the label embedding (``label_enc``). Which tensors those are
is not a list of names: the model is built twice on the meta device, with C and C + 1 classes, and the tensors
whose shapes differ are the class-dependent ones, so a new plug-in with its own class-sized tensor is covered
without touching this file. They keep the target model's fresh initialisation (the focal prior bias of the
class heads). When the checkpoint's label map equals the model's, nothing is re-initialised.
"""

from __future__ import annotations

import copy
import os

import torch
from torch import nn

from .config import Config, ModelConfig
from .data.coco import LabelMap
from .engine.checkpoint import CheckpointError, load_weights, newest_weights
from .models.build import build_model

__all__ = ["class_dependent_keys", "load_pretrained"]

_LISTED = 6


def class_dependent_keys(cfg: ModelConfig) -> set[str]:
    """State-dict keys of the model ``cfg`` describes whose shape depends on ``cfg.num_classes``."""
    base = copy.deepcopy(cfg)
    base.backbone.weights = ""  # the meta-device builds must not read a weights file
    plus = copy.deepcopy(base)
    plus.num_classes = base.num_classes + 1
    with torch.device("meta"):
        a, b = build_model(base).state_dict(), build_model(plus).state_dict()
    return {k for k, v in a.items() if k in b and b[k].shape != v.shape}


def _listing(keys: list[str]) -> str:
    more = len(keys) - _LISTED
    return "[" + ", ".join(keys[:_LISTED]) + (f", ... and {more} more" if more > 0 else "") + "]"


def _groups(keys: set[str]) -> str:
    """``head.class_embed.0.weight, head.class_embed.0.bias, ...`` -> ``head.class_embed (14 tensors)``."""
    prefixes: dict[str, int] = {}
    for k in sorted(keys):
        parts = k.split(".")
        cut = next((i for i, p in enumerate(parts) if p.isdigit()), len(parts) - 1)
        prefix = ".".join(parts[:cut])
        prefixes[prefix] = prefixes.get(prefix, 0) + 1
    return ", ".join(f"{p} ({n} tensor{'s' if n > 1 else ''})" for p, n in prefixes.items())


def load_pretrained(detector: nn.Module, path: str | os.PathLike) -> str:
    """Copy a checkpoint's weights into ``detector`` (built with its own config and label map).

    path: a checkpoint file or a run directory (its newest complete weights). Returns one line saying what was
    loaded and what was re-initialised. Raises :class:`CheckpointError` (one line) when tensors other than the
    class-dependent ones are missing, unexpected or of another shape: a different architecture is an error,
    not a partial load.
    """
    weights = newest_weights(path)
    state, meta = load_weights(weights)
    cfg: Config | None = getattr(detector, "config", None)
    label_map: LabelMap | None = getattr(detector, "label_map", None)
    if cfg is None or label_map is None:
        raise ValueError("the detector has no config/label map; create it with matchdetr.build or matchdetr.from_config")
    saved_map = LabelMap.from_dict(meta["label_map"]) if "label_map" in meta else None
    saved_preset = Config.from_dict(meta["config"]).preset if "config" in meta else "?"
    own = detector.state_dict()
    same_classes = saved_map is not None and saved_map == label_map
    skip = set() if same_classes else class_dependent_keys(cfg.model)
    missing = sorted(k for k in own if k not in state and k not in skip)
    unexpected = sorted(k for k in state if k not in own)
    shapes = sorted(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
                    if k in state and k not in skip and state[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        raise CheckpointError(f"{weights} (preset '{saved_preset}') does not fit preset '{cfg.preset}' apart from the "
                              f"class heads: missing {_listing(missing)}, unexpected {_listing(unexpected)}, "
                              f"shape mismatches {_listing(shapes)}")
    detector.load_state_dict({k: v for k, v in state.items() if k not in skip}, strict=False)
    loaded = len(own) - len(skip)
    if same_classes:
        return f"initialised from {weights}: all {loaded} tensors loaded (same {len(label_map)} classes)"
    old = len(saved_map) if saved_map is not None else "?"
    return (f"initialised from {weights}: {loaded} tensors loaded; class set differs ({old} -> {len(label_map)} "
            f"classes), re-initialised {_groups(skip)}")
