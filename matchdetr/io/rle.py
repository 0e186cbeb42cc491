"""COCO compressed RLE of binary masks in numpy: what ``pycocotools.mask.encode`` writes, without it, so that
``matchdetr predict --model x.onnx`` writes a mask model's masks where only onnxruntime, numpy and Pillow are
installed. No torch here.

COCO's format (``maskApi.c``: ``rleEncode``, ``rleToString``): the mask is read column by column (Fortran
order); ``counts`` are the lengths of alternating runs, zeros first (so it starts with 0 when the first pixel is
set); each count, minus the one two before it from the fourth on, is written in little-endian groups of 5 bits,
a continuation flag 0x20 on all but the last, the sign taken from bit 0x10 of the last, each group + 48 as one
ASCII character.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_GROUPS = 13  # 5-bit groups of an int64 (65 bits): enough for any count


def run_lengths(mask: np.ndarray) -> np.ndarray:
    """The counts of one ``[H, W]`` mask: lengths of alternating runs in column-major order, zeros first."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return np.zeros(1, dtype=np.int64)
    bounds = np.concatenate(([0], np.flatnonzero(flat[1:] != flat[:-1]) + 1, [flat.size]))
    counts = np.diff(bounds).astype(np.int64)
    return np.concatenate(([0], counts)) if flat[0] else counts


def counts_string(counts: np.ndarray) -> str:
    """COCO's compressed string of ``counts`` (module docstring), vectorised over the counts."""
    x = counts.astype(np.int64).copy()
    x[3:] -= counts[1:-2].astype(np.int64)  # from the fourth count on (maskApi.c: `if (i > 2)`)
    shifted = x[:, None] >> (5 * np.arange(_GROUPS + 1, dtype=np.int64))[None, :]  # x >> 5j, arithmetic
    groups = shifted[:, :-1] & 0x1F
    rest = shifted[:, 1:]
    more = np.where(groups & 0x10, rest != -1, rest != 0)  # another group follows group j
    length = np.argmin(more, axis=1) + 1  # the first group after which nothing follows
    used = np.arange(_GROUPS)[None, :] < length[:, None]
    chars = groups + 48 + np.where(np.arange(_GROUPS)[None, :] < (length - 1)[:, None], 0x20, 0)
    return chars[used].astype(np.uint8).tobytes().decode("ascii")


def masks_to_rle(masks: Any) -> list[dict]:
    """``[K, H, W]`` bool masks (numpy, or a torch tensor on any device) -> K compressed RLEs
    ``{"size": [H, W], "counts": str}``, equal to ``pycocotools.mask.encode``'s (``str`` counts: JSON-safe)."""
    if hasattr(masks, "detach"):  # a torch tensor, without importing torch here
        masks = masks.detach().cpu().numpy()
    array = np.asarray(masks)
    if array.ndim != 3:
        raise ValueError(f"masks must be [K, H, W], got shape {array.shape}")
    size = [int(array.shape[1]), int(array.shape[2])]
    return [{"size": list(size), "counts": counts_string(run_lengths(m))} for m in array]
