"""Masks in COCO results: predicted masks as compressed-RLE results entries, and the checks ``segm`` evaluation
runs on results and GT segmentations before faster-coco-eval sees them.

A results ``segmentation`` is compressed RLE ``{"size": [h, w], "counts": str}`` (what :func:`masks_to_rle`
writes, JSON-safe); bytes counts, uncompressed counts and polygons are accepted and converted. Checked first
because the mask API does not fail cleanly on bad RLE: counts that stop short of ``h * w`` pixels make its IoU
loop forever, and other faults surface as a C++ error deep inside ``evaluate``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import numpy as np
import faster_coco_eval.mask_api_new_cpp as rle_api  # the C++ core under faster_coco_eval.core.mask
from faster_coco_eval.core import mask as mask_api

from ..data.polygons import bounded_parts
from ..io.rle import masks_to_rle  # the one encoder (numpy; equal to the mask API's), also on the torch-free path

__all__ = ["masks_to_rle", "mask_results", "results_rle", "check_gt_segmentations", "bound_gt_polygons"]
_API_ERRORS = (RuntimeError, ValueError, TypeError, OverflowError)  # what the mask API raises on bad input


def mask_results(image_id: int, masks: Any, scores: Sequence[float], category_ids: Sequence[int],
                 boxes: Any = None) -> list[dict]:
    """COCO results entries of one image: ``masks`` ``[K, H, W]`` bool at the original image size, ``scores``
    ``[K]``, dataset ``category_ids`` ``[K]`` and, when given, ``boxes`` ``[K, 4]`` abs xyxy pixels (written as
    ``bbox`` [x, y, w, h], so one list scores both ``bbox`` and ``segm``). Rounded as ``predict`` rounds."""
    rles = masks_to_rle(masks)
    scores, labels = _as_list(scores), _as_list(category_ids)
    if not len(rles) == len(scores) == len(labels):
        raise ValueError(f"{len(rles)} masks but {len(scores)} scores and {len(labels)} category ids")
    out = [{"image_id": int(image_id), "category_id": int(c), "segmentation": r, "score": round(float(s), 5)}
           for r, s, c in zip(rles, scores, labels)]
    if boxes is not None:
        for entry, (x0, y0, x1, y1) in zip(out, _as_list(boxes)):
            entry["bbox"] = [round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2),
                             round(float(y1 - y0), 2)]
    return out


def _as_list(x: Any) -> list:
    if hasattr(x, "detach"):
        x = x.detach().cpu()
    return x.tolist() if hasattr(x, "tolist") else list(x)


def results_rle(seg: Any, size_hw: tuple[int, int]) -> dict | str:
    """A results entry's ``segmentation`` on an image of ``size_hw`` as compressed RLE with ``str`` counts, or
    the reason it is unusable (the caller names the file and entry)."""
    h, w = size_hw
    try:
        if isinstance(seg, dict) and "counts" in seg and "size" in seg:
            size = seg["size"].tolist() if hasattr(seg["size"], "tolist") else seg["size"]
            if not isinstance(size, (list, tuple)) or list(size) != [h, w]:
                return f"segmentation size {_short(size)} is not its image's [height, width] [{h}, {w}]"
            counts = seg["counts"]
            if isinstance(counts, list):
                if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0 for v in counts):
                    return "uncompressed RLE counts must be non-negative integers"
                rle = mask_api.frPyObjects({"size": [h, w], "counts": [int(v) for v in counts]}, h, w)
            elif isinstance(counts, (str, bytes)):
                rle = {"size": [h, w], "counts": counts}
            else:
                return f"RLE counts must be a string or a list of integers, got {_short(counts)}"
        elif isinstance(seg, list) and seg and all(_is_polygon(p) for p in seg):
            parts = [[float(v) for v in p] for p in seg]
            parts = _bounded(parts, h, w)
            rle = mask_api.merge(mask_api.frPyObjects(parts, h, w)) if parts else _empty_rle(h, w)
        else:
            return f"segmentation must be an RLE {{size, counts}} or polygons, got {_short(seg)}"
        covered = sum(rle_api.toUncompressedRLE([rle])[0]["counts"])  # a C parse of the string
    except _API_ERRORS as err:
        return f"malformed segmentation ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
    if covered != h * w:
        return f"RLE covers {covered} pixels, not the image's {h} x {w}"
    counts = rle["counts"]
    return {"size": [h, w], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def _is_polygon(part: Any) -> bool:
    return (isinstance(part, (list, tuple)) and len(part) >= 6 and len(part) % 2 == 0
            and all(isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v) for v in part))


def check_gt_segmentations(gt: Any, name: str) -> str | None:
    """The reason the GT (a faster-coco-eval ``COCO``) cannot be scored by mask, naming the first annotation
    at fault, or None: every annotation needs a ``segmentation``; polygons go to COCO's ``annToRLE`` as they
    are, RLEs are checked as results are (so that a bad one cannot hang the evaluation)."""
    for ann in gt.dataset["annotations"]:
        seg, ident = ann.get("segmentation"), ann["id"]
        if seg is None or seg == []:
            return f"{name}: annotation id {ident} has no segmentation, which segm evaluation needs"
        img = gt.imgs[ann["image_id"]] if ann["image_id"] in gt.imgs else None
        if img is None or not all(isinstance(img.get(k), numbers.Integral) for k in ("height", "width")):
            return f"{name}: image of annotation id {ident} needs integer height and width for segm evaluation"
        if isinstance(seg, list):  # short parts included: COCO has a few, and pycocotools reads them
            if not all(isinstance(p, list) and all(isinstance(v, numbers.Real) for v in p) for p in seg):
                return f"{name}: annotation id {ident}: polygons must be lists of numbers, got {_short(seg)}"
            if not all(math.isfinite(v) for p in seg for v in p):  # the rasteriser would read NaN as any integer
                return f"{name}: annotation id {ident}: non-finite polygon coordinates, which segm evaluation cannot score"
            continue
        problem = results_rle(seg, (int(img["height"]), int(img["width"])))
        if isinstance(problem, str):
            return f"{name}: annotation id {ident}: {problem}"
    return None


def bound_gt_polygons(gt: Any) -> None:
    """Clip to its image every GT polygon that reaches far outside it (``data/polygons.py``), in the GT
    (a faster-coco-eval ``COCO``) that ``evaluate_detections`` loaded: a copy whose annotations are its own (a
    ``COCO`` the caller passed is bounded in place). Call after :func:`check_gt_segmentations` (finite numbers, integer image sizes)."""
    for ann in gt.dataset["annotations"]:
        seg = ann.get("segmentation")
        if isinstance(seg, list) and ann["image_id"] in gt.imgs:
            img = gt.imgs[ann["image_id"]]
            parts = _bounded(seg, int(img["height"]), int(img["width"]))
            if parts is not seg:
                ann["segmentation"] = parts or _empty_rle(int(img["height"]), int(img["width"]))


def _bounded(parts: list, h: int, w: int) -> list:
    """``parts`` itself, or a clipped copy when one reaches far outside the ``h x w`` image."""
    bounded = bounded_parts(parts, w, h)
    return parts if bounded is None else bounded


def _empty_rle(h: int, w: int) -> dict:
    """The mask of a polygon with nothing inside its image: no pixel (uncompressed RLE)."""
    return mask_api.frPyObjects({"size": [h, w], "counts": [h * w]}, h, w)


def _short(value: Any, limit: int = 60) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
