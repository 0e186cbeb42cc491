"""Start a model from a checkpoint trained on another label set (fine-tuning).

    model = matchdetr.build("dino-tiny", num_classes=10)
    print(model.load_weights("coco_dino.safetensors"))   # -> one line saying what was kept and re-initialised

Every tensor is copied from the checkpoint except the ones whose meaning depends on the class set: the class
heads (every ``class_embed``) and, with denoising, the label embedding (``label_enc``). Which tensors those are
is not a list of names: the model is built twice on the meta device, with C and C + 1 classes, and the tensors
whose shapes differ are the class-dependent ones (the axis that differs is the class axis), so a new plug-in
with its own class-sized tensor is covered without touching this file.

Classes are matched by **name**: the rows of a class-dependent tensor that belong to a class the checkpoint
also has (same name, whatever its category id or position) are copied from the checkpoint's row of that class;
the rows of new classes keep the target model's fresh initialisation (the focal prior bias of the class
heads). So the COCO and the YOLO layout of the same data (same names, other ids) keep every head, and a
subset of the classes keeps its rows. Rows past the classes (``label_enc``'s extra one) are copied as they are.
When the label maps are equal, everything is loaded as it is.
"""

from __future__ import annotations

import copy
import os

import torch
from torch import nn

from ..compose.detectors import build_model
from ..config import Config, ModelConfig
from ..data.label_map import LabelMap
from .checkpoint import CheckpointError, load_weights, newest_weights

__all__ = ["class_dependent_keys", "load_pretrained", "transfer_weights"]

_LISTED = 6


def class_axes(cfg: ModelConfig) -> dict[str, int]:
    """``{state-dict key: class axis}`` of the tensors of the model ``cfg`` describes whose shape depends on
    ``cfg.num_classes``."""
    base = copy.deepcopy(cfg)
    base.backbone.weights = None  # the meta-device builds must not read a weights file
    plus = copy.deepcopy(base)
    plus.num_classes = base.num_classes + 1
    with torch.device("meta"):
        a, b = build_model(base).state_dict(), build_model(plus).state_dict()
    axes = {}
    for k, v in a.items():
        if k in b and b[k].shape != v.shape:
            axes[k] = next(i for i, (x, y) in enumerate(zip(v.shape, b[k].shape)) if x != y)
    return axes


def class_dependent_keys(cfg: ModelConfig) -> set[str]:
    """State-dict keys of the model ``cfg`` describes whose shape depends on ``cfg.num_classes``."""
    return set(class_axes(cfg))


def _copy_rows(own: torch.Tensor, old: torch.Tensor, axis: int, pairs: list[tuple[int, int]], new_c: int,
               old_c: int) -> torch.Tensor | None:
    """``own`` with, along ``axis``, row ``j`` taken from ``old``'s row ``i`` for each ``(j, i)`` in ``pairs``
    and the rows past the classes (``own``: from ``new_c``, ``old``: from ``old_c``) copied in order; None when
    the other dimensions differ (then the tensor is not class-shaped the same way: left as initialised)."""
    extra = own.shape[axis] - new_c
    if extra < 0 or old.shape[axis] - old_c != extra or own.dim() != old.dim() or any(
            a != b for d, (a, b) in enumerate(zip(own.shape, old.shape)) if d != axis):
        return None
    out = own.clone()
    for j, i in pairs + [(new_c + e, old_c + e) for e in range(extra)]:
        out.select(axis, j).copy_(old.select(axis, i))
    return out


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


def load_pretrained(detector: nn.Module, cfg: Config, label_map: LabelMap, path: str | os.PathLike) -> str:
    """Copy a checkpoint's weights into ``detector`` (built from ``cfg`` for the classes of ``label_map``).

    path: a checkpoint file or a run directory (its newest complete weights). Returns one line saying what was
    loaded and what was re-initialised; see :func:`transfer_weights`."""
    weights = newest_weights(path)
    state, meta = load_weights(weights)
    saved_map = LabelMap.from_dict(meta["label_map"]) if "label_map" in meta else None
    saved_preset = Config.from_dict(meta["config"]).preset if "config" in meta else "?"
    return transfer_weights(detector, cfg, label_map, state, saved_map, str(weights), saved_preset)


def transfer_weights(detector: nn.Module, cfg: Config, label_map: LabelMap, state: dict[str, torch.Tensor],
                     saved_map: LabelMap | None, source: str, source_preset: str = "?") -> str:
    """Copy ``state`` (whose class heads belong to ``saved_map``) into ``detector``: everything when the label
    maps are equal, else everything but the class-dependent tensors, whose rows of the classes both have by name
    are kept. Returns one line saying what was loaded and re-initialised (``source`` names where the weights
    come from, ``source_preset`` their preset). Raises :class:`CheckpointError` (one line) when tensors other than the class-dependent ones are
    missing, unexpected or of another shape: a different architecture is an error, not a partial load."""
    own = detector.state_dict()
    same_classes = saved_map is not None and saved_map == label_map
    axes = {} if same_classes else class_axes(cfg.model)
    skip = set(axes)
    missing = sorted(k for k in own if k not in state and k not in skip)
    unexpected = sorted(k for k in state if k not in own)
    shapes = sorted(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
                    if k in state and k not in skip and state[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        raise CheckpointError(f"{source} (preset '{source_preset}') does not fit preset '{cfg.preset}' apart from the class heads: missing "
                              f"{_listing(missing)}, unexpected {_listing(unexpected)}, shape mismatches {_listing(shapes)}")
    rows = _rows_by_name(saved_map, label_map) if saved_map is not None and not same_classes else []
    merged: dict[str, torch.Tensor] = {}
    if rows:
        assert saved_map is not None
        for k in skip:
            if k in state:
                copied = _copy_rows(own[k], state[k], axes[k], rows, len(label_map), len(saved_map))
                if copied is not None:
                    merged[k] = copied
    detector.load_state_dict({**{k: v for k, v in state.items() if k not in skip}, **merged}, strict=False)
    return _summary(source, len(own), skip, merged, rows, label_map, saved_map, same_classes)


def _summary(source: str, total: int, skip: set[str], merged: dict[str, torch.Tensor], rows: list[tuple[int, int]],
             label_map: LabelMap, saved_map: LabelMap | None, same_classes: bool) -> str:
    loaded = total - len(skip)
    if same_classes:
        return f"initialised from {source}: all {loaded} tensors loaded (same {len(label_map)} classes)"
    old = len(saved_map) if saved_map is not None else "?"
    if rows and saved_map is not None and len(rows) == len(label_map) == len(saved_map) and merged.keys() == skip:
        return (f"initialised from {source}: all {total} tensors loaded; the same {len(label_map)} classes "
                f"matched by name (category ids or order differ), their rows of {_groups(skip)} kept")
    if rows and merged and saved_map is not None:
        fresh = [n for n in label_map.names if n not in set(saved_map.names)]
        return (f"initialised from {source}: {loaded} tensors loaded; class set differs ({old} -> {len(label_map)} "
                f"classes): {len(rows)} matched by name keep their rows of {_groups(set(merged))}, "
                f"{len(fresh)} new class(es) start fresh ({_listing(fresh)})")
    return (f"initialised from {source}: {loaded} tensors loaded; class set differs ({old} -> {len(label_map)} "
            f"classes), re-initialised {_groups(skip)}")


def _rows_by_name(saved: LabelMap, new: LabelMap) -> list[tuple[int, int]]:
    """``(new label, checkpoint label)`` of the classes both have by name (none when a side repeats a name)."""
    if len(set(saved.names)) != len(saved.names) or len(set(new.names)) != len(new.names):
        return []
    old = {n: i for i, n in enumerate(saved.names)}
    return [(j, old[n]) for j, n in enumerate(new.names) if n in old]
