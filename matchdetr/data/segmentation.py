"""COCO ``segmentation`` fields, checked when a dataset opens and decoded to instance masks only per sample.

The three forms COCO's ``annToRLE`` reads, all in pixels of the image as stored (the JSON frame):

- polygons: a list of ``[x1, y1, x2, y2, ...]`` parts, merged into one mask; a part with an odd number of
  coordinates or under 3 points is ignored (as detectron2 does);
- compressed RLE: ``{"size": [h, w], "counts": "<string>"}``;
- uncompressed RLE: ``{"size": [h, w], "counts": [int, ...]}`` (crowd regions; our synthetic generator).

Crowd annotations never reach here: the dataset does not train on them (``coco.py``), and evaluation reads
them from the JSON as COCO does. An annotation without a usable segmentation (none, an empty or malformed
one, an RLE whose size is not its image's, or one the decoder rejects) gets the filled rectangle of its
bbox as its mask: reported once per kind when the dataset opens, or once per process when decoding fails.

Opening stays cheap: each segmentation is copied into flat numpy arrays (polygon coordinates, RLE strings,
RLE counts) instead of keeping the parsed JSON objects, which for COCO train's ~35M polygon numbers would be
over 1 GB of Python floats, copied into every DataLoader worker page by page as reference counts change.
Decoding (faster-coco-eval's mask API, pycocotools' C code) runs in ``__getitem__``.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any, Sequence

import numpy as np
import torch
from faster_coco_eval.core import mask as mask_api
from torch import Tensor

from .common import DatasetWarning, Problems
from .images import DecodedImage
from .mask_ops import align_masks, box_masks
from .polygons import MARGIN, clip_polygon

__all__ = ["Segmentations"]

_BOX, _POLYGON, _STRING, _COUNTS = 0, 1, 2, 3  # how an annotation's mask is made
_FROM_BOXES = "masks made from their boxes (annotation ids)"
_DECODE_ERRORS = (RuntimeError, ValueError, TypeError, OverflowError)  # what the mask API raises on bad input


class Segmentations:
    """The segmentations of a dataset's kept annotations, in the dataset's (image-sorted) annotation order.

    Built by :meth:`build`; :meth:`masks` decodes the annotations ``lo..hi`` of one image.
    """

    def __init__(self, kind: np.ndarray, span: np.ndarray, parts: np.ndarray, coords: np.ndarray,
                 chars: np.ndarray, counts: np.ndarray) -> None:
        # kind [M] int8; span [M, 2] int64 (a range of `parts` for polygons, of `chars` or `counts` for RLE);
        # parts [P + 1] offsets into coords [C] float64; chars [S] uint8; counts [K] int64.
        self.kind, self.span, self.parts, self.coords = kind, span, parts, coords
        self.chars, self.counts = chars, counts
        self._warned: set[str] = set()  # decode failures reported in this process

    @classmethod
    def build(cls, segmentations: Sequence[Any], sizes_hw: Sequence[tuple[int, int]], ids: Sequence[Any],
              problems: Problems) -> "Segmentations":
        """Check and store ``segmentations[m]`` of annotation ``ids[m]`` on an image of ``sizes_hw[m]``
        (the JSON height, width); problems go to ``problems``, one warning per kind."""
        m = len(segmentations)
        kind, span = np.zeros(m, dtype=np.int8), np.zeros((m, 2), dtype=np.int64)
        polygons: list[list] = []
        strings: list[bytes] = []
        count_lists: list[list] = []
        n_chars = n_counts = 0
        for a, (seg, (h, w), ident) in enumerate(zip(segmentations, sizes_hw, ids)):
            if isinstance(seg, list):
                parts = [p for p in seg if type(p) is list and len(p) >= 6 and len(p) % 2 == 0]
                if len(parts) < len(seg):
                    problems.add("polygon parts ignored: odd coordinate count or under 3 points (annotation ids)",
                                 ident)
                if parts:
                    kind[a], span[a] = _POLYGON, (len(polygons), len(polygons) + len(parts))
                    polygons += parts
                else:
                    problems.add(f"annotations without a usable polygon: {_FROM_BOXES}", ident)
            elif isinstance(seg, dict) and ("counts" in seg or "size" in seg):
                size, counts = seg.get("size"), seg.get("counts")
                if type(size) not in (list, tuple) or [type(v) for v in size] != [int, int] or list(size) != [h, w]:
                    problems.add(f"annotations whose RLE size is not their image's [height, width]: {_FROM_BOXES}",
                                 ident)
                elif isinstance(counts, str) and counts:
                    data = counts.encode("utf-8")
                    kind[a], span[a] = _STRING, (n_chars, n_chars + len(data))
                    strings.append(data)
                    n_chars += len(data)
                elif type(counts) is list and counts:
                    kind[a], span[a] = _COUNTS, (n_counts, n_counts + len(counts))
                    count_lists.append(counts)
                    n_counts += len(counts)
                else:
                    problems.add(f"annotations with malformed RLE counts: {_FROM_BOXES}", ident)
            elif seg is None or seg == [] or seg == {}:
                problems.add(f"annotations without a segmentation: {_FROM_BOXES}", ident)
            else:
                problems.add(f"annotations with a malformed segmentation: {_FROM_BOXES}", ident)
        parts, coords = _flat(polygons, np.float64)
        counts_flat = _flat(count_lists, np.int64)[1]
        store = cls(kind, span, parts, coords, np.frombuffer(b"".join(strings), dtype=np.uint8), counts_flat)
        store._bound_polygons(sizes_hw, ids, problems)
        store._check_numbers(sizes_hw, ids, problems)
        return store

    def usable(self) -> int:
        """How many annotations have a segmentation of their own (the others get their filled box)."""
        return int((self.kind != _BOX).sum())

    def _bound_polygons(self, sizes_hw: Sequence[tuple[int, int]], ids: Sequence[Any], problems: Problems) -> None:
        """Clip to their image the polygon parts that reach far outside it (``polygons.py``: their rasterisation
        would cost memory in proportion to their extent). Found with numpy over all parts; only those are
        clipped, one by one. Non-finite parts are left to ``_check_numbers``."""
        polygon = np.flatnonzero(self.kind == _POLYGON)
        if not len(polygon):
            return
        owner = np.repeat(polygon, self.span[polygon, 1] - self.span[polygon, 0])  # the annotation of each part
        hw = np.asarray(sizes_hw, dtype=np.float64).reshape(-1, 2)[owner]
        starts = self.parts[:-1] // 2  # every part has >= 3 points: no empty segment for reduceat
        xs, ys = self.coords[0::2], self.coords[1::2]
        finite = np.logical_and.reduceat(np.isfinite(xs) & np.isfinite(ys), starts)
        with np.errstate(invalid="ignore"):
            far = ((np.minimum.reduceat(xs, starts) < -MARGIN * hw[:, 1])
                   | (np.maximum.reduceat(xs, starts) > (1 + MARGIN) * hw[:, 1])
                   | (np.minimum.reduceat(ys, starts) < -MARGIN * hw[:, 0])
                   | (np.maximum.reduceat(ys, starts) > (1 + MARGIN) * hw[:, 0]))
        far &= finite
        if not far.any():
            return
        pieces = [self.coords[a:b] for a, b in zip(self.parts[:-1], self.parts[1:])]
        for p in np.flatnonzero(far):
            clipped = clip_polygon(pieces[p].tolist(), hw[p, 1], hw[p, 0])
            # nothing of it inside: a point, which covers no pixel (the annotation falls back to its box if no
            # other part does)
            pieces[p] = np.asarray(clipped or [0.0] * 6, dtype=np.float64)
        for a in sorted(set(owner[far].tolist())):
            problems.add("annotations with polygons reaching far outside their image: clipped to it "
                         "(annotation ids)", ids[a])
        self.coords = np.concatenate(pieces)
        self.parts = np.concatenate([[0], np.cumsum([len(p) for p in pieces])]).astype(np.int64)

    def _check_numbers(self, sizes_hw: Sequence[tuple[int, int]], ids: Sequence[Any], problems: Problems) -> None:
        """Polygons with non-finite coordinates, and uncompressed counts that are negative or do not cover the
        image exactly, fall back to boxes (``_flat`` made unparsable values NaN / -1 for this). Vectorised with
        cumulative sums: one Python step per bad annotation, not per annotation."""
        sizes = np.asarray(sizes_hw, dtype=np.int64).reshape(-1, 2)
        bad = np.zeros(len(self.kind), dtype=bool)
        polygon = self.kind == _POLYGON
        if polygon.any():
            cs = np.concatenate([[0], np.cumsum(~np.isfinite(self.coords))])
            lo, hi = self.parts[self.span[polygon, 0]], self.parts[self.span[polygon, 1]]
            bad[polygon] = cs[hi] > cs[lo]
        counts = self.kind == _COUNTS
        if counts.any():
            negative = np.concatenate([[0], np.cumsum(self.counts < 0)])
            total = np.concatenate([[0], np.cumsum(self.counts)])
            lo, hi = self.span[counts, 0], self.span[counts, 1]
            covered = total[hi] - total[lo] == sizes[counts, 0] * sizes[counts, 1]
            bad[counts] = (negative[hi] > negative[lo]) | ~covered
        for a in np.flatnonzero(bad):
            what = "non-numeric or non-finite polygon coordinates" if self.kind[a] == _POLYGON else \
                "uncompressed RLE counts that are not non-negative integers summing to height x width"
            problems.add(f"annotations with {what}: {_FROM_BOXES}", ids[a])
        self.kind[bad] = _BOX

    def masks(self, lo: int, hi: int, boxes: Tensor, json_size: tuple[int, int], decoded: DecodedImage,
              where: str) -> Tensor:
        """``[hi - lo, H, W]`` bool masks of annotations ``lo..hi``, upright at the decoded image's size.

        boxes: their ``[hi - lo, 4]`` abs xyxy boxes in the JSON frame (the fallback masks).
        json_size: ``(w, h)`` the annotation file records for the image. where: the image file, for warnings."""
        w, h = json_size
        out = torch.zeros((hi - lo, h, w), dtype=torch.bool)
        fallback = torch.zeros(hi - lo, dtype=torch.bool)
        for i, a in enumerate(range(lo, hi)):
            mask = self._decode(a, h, w, where) if self.kind[a] != _BOX else None
            if mask is None:
                fallback[i] = True
            else:
                out[i] = torch.from_numpy(mask)
        if fallback.any():
            out[fallback] = box_masks(boxes[fallback], (h, w))
        return align_masks(out, json_size, decoded)

    def _decode(self, a: int, h: int, w: int, where: str) -> np.ndarray | None:
        """``[h, w]`` bool mask of annotation ``a``, or None (reported) when the mask API rejects it or it
        covers no pixel."""
        lo, hi = (int(v) for v in self.span[a])
        try:
            if self.kind[a] == _POLYGON:
                polygon = [self.coords[self.parts[p]:self.parts[p + 1]].tolist() for p in range(lo, hi)]
                rle = mask_api.merge(mask_api.frPyObjects(polygon, h, w))
            elif self.kind[a] == _STRING:
                rle = {"size": [h, w], "counts": self.chars[lo:hi].tobytes()}
            else:
                rle = mask_api.frPyObjects({"size": [h, w], "counts": self.counts[lo:hi].tolist()}, h, w)
            mask = mask_api.decode(rle).astype(bool)
        except _DECODE_ERRORS as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            return self._fallback(where, "cannot decode a segmentation", f" ({reason})")
        # a polygon thinner than a pixel covers none: its box still marks where the object is
        return mask if mask.any() else self._fallback(where, "a segmentation covers no pixel")

    def _fallback(self, where: str, kind: str, detail: str = "") -> None:
        """Report a ``kind`` of problem once per process (naming the first file it met) and return no mask."""
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(f"{where}: {kind}{detail}; its mask is made from its box (such segmentations are "
                          "reported once per process)", DatasetWarning, stacklevel=3)


def _flat(lists: list[list], dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """``([L + 1] offsets, [sum of lengths] values)`` of a list of number lists. One numpy call for all of them;
    only when that fails (a string or a nested list somewhere) list by list, the bad values made NaN (floats)
    or -1 (ints) so that ``_check_numbers`` reports their annotation."""
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum([len(v) for v in lists], out=offsets[1:])
    try:
        values = np.array(list(itertools.chain.from_iterable(lists)), dtype=dtype)
        if values.ndim == 1 and (dtype is not np.int64 or _all_int(lists)):
            return offsets, values
    except (TypeError, ValueError, OverflowError):
        pass
    bad = np.nan if dtype is np.float64 else -1
    return offsets, np.concatenate([np.zeros(0, dtype=dtype)] + [_one(v, dtype, bad) for v in lists])


def _all_int(lists: list[list]) -> bool:
    """RLE counts must be JSON integers: numpy would silently truncate 2.5 to 2."""
    return all(type(v) is int for counts in lists for v in counts)


def _one(values: list, dtype: type, bad: float) -> np.ndarray:
    ok = (int,) if dtype is np.int64 else (int, float)
    out = np.array([v if type(v) in ok else bad for v in values], dtype=np.float64)
    return out.astype(dtype)
