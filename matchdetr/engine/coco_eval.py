"""COCO bbox and segm scoring on top of faster-coco-eval (the pycocotools API with a C++ core).

Metrics are reported in percent (0..100) as the papers do. A metric that COCO leaves undefined (it
returns -1, e.g. APs when the GT holds no small boxes) is NaN here, "-" in `table()` and null in JSON,
so it cannot be mistaken for a real score.

Inputs are checked before scoring: pycocotools fails on bad results with an assert or a KeyError deep
inside `loadRes`, which tells the user neither the file nor the entry at fault.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import numbers
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster

from ..io.files import atomic_write, atomic_write_json
from .coco_masks import bound_gt_polygons, check_gt_segmentations, results_rle
from .confusion import CONF, confusion_matrix
from .eval_result import IOU_PREFIXES, METRIC_NAMES, SEGM_PREFIX, EvalResult

__all__ = [
    "METRIC_NAMES",
    "SEGM_PREFIX",
    "EvalInputError",
    "EvalResult",
    "load_coco",
    "load_results",
    "evaluate_detections",
    "write_results",
]

class EvalInputError(ValueError):
    """A GT or results input is unusable; the message is one line naming the source (and entry)."""

def _silent(*args: Any, **kwargs: Any) -> None:
    """print_function for faster-coco-eval: the caller prints `EvalResult.table()` instead."""

def _read_json(source: str | os.PathLike, what: str) -> Any:
    path = Path(source)
    if not path.is_file():
        raise EvalInputError(f"{what} file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise EvalInputError(f"{path}: invalid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise EvalInputError(f"{path}: cannot read {what} file ({e})") from None

def _short(value: Any, limit: int = 60) -> str:
    """repr() cut to one short line, for error messages."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."

def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)

def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)

def load_coco(source: str | os.PathLike | dict) -> COCO:
    """Load a COCO GT (JSON path or parsed dict) into a faster-coco-eval `COCO`.

    The dict is copied one level deep: COCOeval writes bookkeeping keys ("ignore", ...) into annotations,
    which must not leak into the caller's data. A missing "area" is filled with w*h and a missing
    "iscrowd" with 0, since the area ranges and crowd handling need them.
    """
    name = str(source) if not isinstance(source, dict) else "<GT dict>"
    data = source if isinstance(source, dict) else _read_json(source, "GT annotation")
    if not isinstance(data, dict):
        raise EvalInputError(f"{name}: expected a COCO JSON object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise EvalInputError(f"{name}: missing or non-list key '{key}' (a COCO GT needs images, "
                                 "annotations and categories)")
    required = {"images": ("id",), "categories": ("id", "name"),
                "annotations": ("id", "image_id", "category_id", "bbox")}
    copied: dict[str, Any] = {k: v for k, v in data.items()}
    for key, keys in required.items():
        items = []
        for i, item in enumerate(data[key]):
            if not isinstance(item, dict) or any(k not in item for k in keys):
                raise EvalInputError(f"{name}: {key}[{i}] must be an object with keys {list(keys)}, "
                                     f"got {_short(item)}")
            items.append(dict(item))
        copied[key] = items
    for key in ("images", "annotations"):  # the index is by id: a duplicate silently replaces an entry
        seen: set[str] = set()
        for item in copied[key]:
            if repr(item["id"]) in seen:
                raise EvalInputError(f"{name}: duplicate {key[:-1]} id {_short(item['id'])} (ids must be unique)")
            seen.add(repr(item["id"]))
    for i, ann in enumerate(copied["annotations"]):
        bbox = ann["bbox"]
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            raise EvalInputError(f"{name}: annotations[{i}].bbox must be 4 numbers [x, y, w, h], "
                                 f"got {_short(bbox)}")
        ann.setdefault("area", float(bbox[2]) * float(bbox[3]))
        ann.setdefault("iscrowd", 0)
    return COCO(copied, print_function=_silent)

def load_results(source: str | os.PathLike | list[dict], gt: COCO, iou_type: str = "bbox") -> list[dict]:
    """Validate a COCO results list (path or list) against `gt`; return clean copies.

    Each entry needs image_id (in the GT), category_id (a GT category), bbox [x, y, w, h] and score, all
    finite numbers; otherwise `EvalInputError` names the source and entry index. Boxes with w <= 0 or
    h <= 0 are dropped with one warning: they cannot overlap anything, and some exporters emit them for
    collapsed predictions.

    iou_type "segm": a ``segmentation`` in place of the bbox (compressed RLE at the image's size; bytes or
    uncompressed counts and polygons are converted: ``coco_masks.results_rle``). A bbox the entry carries is
    left out, so that COCO takes a detection's area (small / medium / large) from its mask, as detectron2 does.
    """
    return _clean(*_results_data(source), gt, iou_type)

def _results_data(source: str | os.PathLike | list[dict]) -> tuple[str, list]:
    name = _source_name(source)
    data = source if isinstance(source, list) else _read_json(source, "results")
    if not isinstance(data, list):
        raise EvalInputError(f"{name}: expected a JSON list of detections, got {type(data).__name__}")
    return name, data

def iou_types_of(results: str | os.PathLike | list[dict]) -> tuple[str, ...]:
    """What a results file can be scored on: ``("bbox",)`` when every entry has a box, ``("segm",)`` when every
    entry has a ``segmentation`` (COCO's standard mask results have no ``bbox``), both when both; a one-line
    EvalInputError when neither holds for every entry."""
    name, data = _results_data(results)
    dicts = [d for d in data if isinstance(d, dict)]
    has = [kind for kind, key in (("bbox", "bbox"), ("segm", "segmentation")) if dicts and all(key in d for d in dicts)]
    if not has and data:
        raise EvalInputError(f"{name}: no entry kind holds for every detection: each needs a 'bbox' [x, y, w, h] "
                             f"(box results) or a 'segmentation' (mask results)")
    return tuple(has) or ("bbox",)


def _clean(name: str, data: list, gt: COCO, iou_type: str) -> list[dict]:
    img_ids, cat_ids = set(gt.getImgIds()), set(gt.getCatIds())
    geometry = "bbox" if iou_type == "bbox" else "segmentation"
    clean, degenerate = [], 0
    for i, det in enumerate(data):
        where = f"{name}: entry {i}"
        if not isinstance(det, dict):
            raise EvalInputError(f"{where}: expected an object, got {_short(det)}")
        missing = [k for k in ("image_id", "category_id", geometry, "score") if k not in det]
        if missing:
            raise EvalInputError(f"{where}: missing key(s) {missing}")
        # In-memory results often hold numpy / torch values straight from the model.
        det = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in det.items()}
        bbox, score = det["bbox"] if geometry == "bbox" else [], det["score"]
        if geometry == "bbox" and (not isinstance(bbox, (list, tuple)) or len(bbox) != 4
                                   or not all(_is_number(v) for v in bbox)):
            raise EvalInputError(f"{where}: bbox must be 4 numbers [x, y, w, h], got {_short(bbox)}")
        if not _is_number(score):
            raise EvalInputError(f"{where}: score must be a number, got {_short(score)}")
        if not all(math.isfinite(v) for v in (*bbox, score)):
            raise EvalInputError(f"{where}: non-finite value in bbox/score: bbox={_short(bbox)} score={score}")
        if not _is_int(det["image_id"]) or det["image_id"] not in img_ids:
            raise EvalInputError(f"{where}: image_id {_short(det['image_id'])} is not an image of the GT")
        if not _is_int(det["category_id"]) or det["category_id"] not in cat_ids:
            raise EvalInputError(f"{where}: category_id {_short(det['category_id'])} is not a GT category "
                                 f"(GT ids: {sorted(cat_ids)[:20]})")
        entry = {"image_id": int(det["image_id"]), "category_id": int(det["category_id"]), "score": float(score)}
        if geometry == "segmentation":
            img = gt.imgs[entry["image_id"]]
            rle = results_rle(det["segmentation"], (int(img.get("height", 0)), int(img.get("width", 0))))
            if isinstance(rle, str):
                raise EvalInputError(f"{where}: {rle}")
            clean.append({**entry, "segmentation": rle})
        elif bbox[2] <= 0 or bbox[3] <= 0:
            degenerate += 1
        else:
            clean.append({**entry, "bbox": [float(v) for v in bbox]})
    if degenerate:  # in the user's words: whose detections, what is wrong with them, what happens to them
        whose = "of the model's" if name == _IN_MEMORY else "of the"
        where = "" if name == _IN_MEMORY else f" in {name}"
        warnings.warn(f"{degenerate} {whose} {len(data)} detections{where} have a box of zero width or height (a box "
                      f"predicted outside the image is clipped to its border); they can match no object and are "
                      f"left out of the box AP", stacklevel=3)
    return clean

def evaluate_detections(
    gt: str | os.PathLike | dict | COCO,
    results: str | os.PathLike | list[dict],
    out_dir: str | os.PathLike | None = None,
    image_ids: list[int] | None = None,
    iou_type: str | Sequence[str] = "bbox",
    conf: float = CONF,
) -> EvalResult:
    """COCO evaluation of `results` against `gt`; writes out_dir/metrics.json when out_dir is given.

    image_ids: evaluate on these images only (a dataset that skipped unreadable images); default all.
    iou_type: "bbox" (boxes), "segm" (masks: every entry needs a ``segmentation``, every GT annotation one
    too), or ("bbox", "segm") for both in one EvalResult: box metrics under COCO's names (AP, AP50, ...), mask
    metrics under the same after ``segm_`` (segm_AP, segm_AP50, ...), per-class rows with both.

    With boxes, also the confusion matrix at score > ``conf`` and IoU 0.5 (``engine/confusion.py``, written as
    ``out_dir/confusion.npz``) and each class's precision ``P`` and recall ``R`` from it (percent).

    Empty results give zero metrics (NaN where undefined) and a warning. The results file is only read.
    """
    types = [iou_type] if isinstance(iou_type, str) else list(iou_type)
    if not types or len(set(types)) != len(types) or not set(types) <= set(IOU_PREFIXES):
        raise ValueError(f"iou_type must be 'bbox', 'segm' or both, got {iou_type!r}")
    gt_coco = gt if isinstance(gt, COCO) else load_coco(gt)
    problem = check_gt_segmentations(gt_coco, "<GT>" if isinstance(gt, (dict, COCO)) else str(gt)) \
        if "segm" in types else None
    if problem:
        raise EvalInputError(problem)
    if "segm" in types:  # rasterising a polygon costs memory in proportion to its extent: bound it by its image
        bound_gt_polygons(gt_coco)
    name, data = _results_data(results)
    result = EvalResult(metrics={})
    for kind in types:
        dets = _clean(name, data, gt_coco, kind)
        if not dets:
            what = "detections" if kind == "bbox" else "mask detections"
            warnings.warn(f"no {what} to evaluate in {name}; all metrics are zero", stacklevel=2)
        metrics, per_class, curves = _score(gt_coco, dets, kind, image_ids)
        result.metrics.update(metrics)
        result.per_class = [dict(a, **b) for a, b in zip(result.per_class, per_class)] or per_class
        result.curves = result.curves or curves
        if kind == "bbox":
            result.confusion = confusion_matrix(gt_coco, dets, image_ids, conf)
            _add_precision_recall(result)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "metrics.json", result.to_json(), allow_nan=False)
        # the curves behind AP, for `matchdetr report` (precision-recall plots) without re-scoring
        atomic_write(out / "pr_curves.npz", lambda tmp: _save_npz(tmp, result.curves))
        if result.confusion is not None:
            atomic_write(out / "confusion.npz", lambda tmp: _save_npz(tmp, result.confusion.to_arrays()))
    return result


def _add_precision_recall(result: EvalResult) -> None:
    """Each per-class row's ``P`` and ``R`` (percent, NaN where undefined) at the confusion matrix's threshold."""
    confusion = result.confusion
    precision, recall = confusion.precision_recall()
    at = {c: k for k, c in enumerate(confusion.cat_ids)}
    for row in result.per_class:
        k = at[int(row["category_id"])]
        row["P"], row["R"] = float(precision[k]) * 100.0, float(recall[k]) * 100.0

def _score(gt: COCO, dets: list[dict], iou_type: str,
           image_ids: list[int] | None) -> tuple[dict[str, float], list[dict], dict[str, Any]]:
    """One COCOeval run: (metrics, per-class rows, PR curves), names prefixed as ``IOU_PREFIXES`` says."""
    # The library prints through print_function, but guard stdout too: a stray print() in a
    # dependency would otherwise interleave with the caller's progress output.
    with contextlib.redirect_stdout(io.StringIO()):
        dt_coco = gt.loadRes(dets)  # loadRes adds id/area (and bbox or segmentation) keys to our own copies
        coco_eval = COCOeval_faster(gt, dt_coco, iouType=iou_type, print_function=_silent)
        if image_ids is not None:
            coco_eval.params.imgIds = sorted(int(i) for i in image_ids)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    prefix = IOU_PREFIXES[iou_type]
    stats = np.asarray(coco_eval.stats[: len(METRIC_NAMES)], dtype=np.float64)
    metrics = {prefix + n: (float("nan") if s < 0 else float(s) * 100.0) for n, s in zip(METRIC_NAMES, stats)}
    curves = {"precision": np.asarray(coco_eval.eval["precision"])[:, :, :, 0, -1].astype(np.float32),
              "iou_thrs": np.asarray(coco_eval.params.iouThrs, dtype=np.float32),
              "rec_thrs": np.asarray(coco_eval.params.recThrs, dtype=np.float32),
              "cat_ids": np.asarray(coco_eval.params.catIds, dtype=np.int64)}
    return metrics, _per_class(coco_eval, gt, dets, prefix), curves

def _save_npz(path: str, arrays: dict[str, Any]) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to the temporary name
        np.savez_compressed(f, **arrays)

_IN_MEMORY = "<results list>"  # the name of results given as a list (the model's own, during evaluation)


def _source_name(source: Any) -> str:
    return _IN_MEMORY if isinstance(source, list) else str(source)

def _per_class(coco_eval: COCOeval_faster, gt: COCO, dets: list[dict], prefix: str = "") -> list[dict]:
    """Per-category AP (``prefix`` + AP, AP50) from eval["precision"] [T, R, K, A, M] at area "all", maxDets 100.

    -1 marks (IoU, recall) cells without GT; they are excluded, as COCOeval.summarize() does.
    """
    precision = coco_eval.eval["precision"]
    iou50 = int(np.argmin(np.abs(coco_eval.params.iouThrs - 0.5)))
    num_dets: dict[int, int] = {}
    for d in dets:
        num_dets[d["category_id"]] = num_dets.get(d["category_id"], 0) + 1
    rows = []
    for k, cat_id in enumerate(int(c) for c in coco_eval.params.catIds):
        p = precision[:, :, k, 0, -1]
        anns = gt.loadAnns(gt.getAnnIds(catIds=[cat_id]))
        rows.append({
            "category_id": cat_id,
            "name": gt.cats[cat_id].get("name", str(cat_id)),
            f"{prefix}AP": _mean_valid(p),
            f"{prefix}AP50": _mean_valid(p[iou50]),
            "num_gt": sum(1 for a in anns if not a.get("iscrowd", 0)),
            "num_dets": num_dets.get(cat_id, 0),
        })
    return rows

def _mean_valid(p: np.ndarray) -> float:
    valid = p[p > -1]
    return float(valid.mean()) * 100.0 if valid.size else float("nan")

def _to_plain(det: dict) -> dict:
    # Detections often carry numpy/torch scalars, which json cannot serialise (nor bytes RLE counts).
    out: dict[str, Any] = {"image_id": int(det["image_id"]), "category_id": int(det["category_id"])}
    if "bbox" in det:
        out["bbox"] = [float(v) for v in det["bbox"]]
    if "segmentation" in det:
        seg = det["segmentation"]
        counts = seg["counts"] if isinstance(seg, dict) else None
        out["segmentation"] = ({"size": [int(v) for v in seg["size"]],
                                "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}
                               if isinstance(seg, dict) else seg)
    out["score"] = float(det["score"])
    return out

def write_results(results: list[dict], path: str | os.PathLike) -> None:
    """Write a COCO results JSON (image_id, category_id, bbox [x, y, w, h] and/or segmentation, score).

    Atomic (temporary file + os.replace): a run killed mid-write leaves the old file, never half a file.
    """
    atomic_write_json(path, [_to_plain(d) for d in results], allow_nan=False)

