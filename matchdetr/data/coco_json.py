"""Reading a COCO annotation file: the JSON itself and the vectorised checks of its boxes (``coco.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .common import DatasetError

_CLIP_TOLERANCE = 1.0  # px a box may overshoot the image before clipping it is worth a warning (COCO has some)


def read_coco_json(path: Path) -> dict:
    """The parsed annotation file, with list-valued images / annotations / categories, or one-line DatasetError."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}: invalid JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not UTF-8 text, not a COCO annotation file") from None
    except OSError as err:
        raise DatasetError(f"{path}: cannot read annotation file ({err.strerror or err})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: top level must be a JSON object with images/annotations/categories")
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if missing:
        raise DatasetError(f"{path}: missing or non-list key(s) {', '.join(repr(k) for k in missing)}")
    return data


def check_boxes(xywh: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """COCO ``[M, 4]`` (x, y, w, h) boxes on images of ``[M, 2]`` (w, h) -> clipped ``[M, 4]`` xyxy, the
    ``[M]`` keep mask and ``{problem: [M] mask}``. Overshoots under ``_CLIP_TOLERANCE`` are clipped silently."""
    xywh = xywh.reshape(-1, 4)
    finite = np.isfinite(xywh).all(1)
    positive = finite & (xywh[:, 2] > 0) & (xywh[:, 3] > 0)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
    clipped = np.concatenate([np.maximum(xyxy[:, :2], 0), np.minimum(xyxy[:, 2:], size)], 1)
    keep = positive & (clipped[:, 2:] > clipped[:, :2]).all(1)
    overshoot = np.maximum(-xyxy[:, :2], xyxy[:, 2:] - size).max(1, initial=-np.inf) > _CLIP_TOLERANCE
    return clipped, keep, {
        "dropped: non-finite bbox": ~finite,
        "dropped: bbox with non-positive width/height": finite & ~positive,
        "dropped: bbox entirely outside its image": positive & ~keep,
        "clipped: bbox partly outside its image": keep & overshoot,
    }
