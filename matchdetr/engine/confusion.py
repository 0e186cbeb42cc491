"""The confusion matrix of detections against the ground truth, as Ultralytics computes and draws it
(``ultralytics/utils/metrics.py: ConfusionMatrix.process_batch``), and per-class precision and recall from it.

Per image, detections scoring above ``conf`` are matched to the (non-crowd) ground-truth boxes whatever their
classes: of the pairs with IoU above ``iou``, each detection keeps its best-overlapping ground truth, then each
ground truth its best-overlapping detection among those. A matched pair counts at (predicted class, true
class), so a right box with the wrong name is an off-diagonal entry; an unmatched ground truth counts in the
background row (missed), an unmatched detection in the background column (false detection). Precision and
recall of class k are then ``tp / (tp + fp)`` and ``tp / (tp + fn)`` with tp the diagonal, fp the rest of row k
and fn the rest of column k.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..boxes_numpy import box_iou

CONF = 0.25  # the score threshold (Ultralytics' default for its confusion matrix)
IOU = 0.5


@dataclass
class Confusion:
    """matrix: ``[K + 1, K + 1]`` counts, rows the predicted class and columns the true class in ``cat_ids``
    order, the last row and column the background; names: the K class names; conf / iou: the thresholds."""

    matrix: np.ndarray
    cat_ids: list[int]
    names: list[str]
    conf: float = CONF
    iou: float = IOU

    def precision_recall(self) -> tuple[np.ndarray, np.ndarray]:
        """``[K]`` precision and recall per class (NaN where a class has no detection / no ground truth)."""
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)[:-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            return tp / m.sum(1)[:-1], tp / m.sum(0)[:-1]

    def to_arrays(self) -> dict[str, Any]:
        """For ``confusion.npz`` (plain arrays: read back without pickle)."""
        return {"matrix": self.matrix, "cat_ids": np.asarray(self.cat_ids, dtype=np.int64),
                "names": np.asarray(self.names, dtype=str), "conf": np.float64(self.conf), "iou": np.float64(self.iou)}

    @classmethod
    def from_arrays(cls, data: Any) -> "Confusion":
        return cls(np.asarray(data["matrix"]), [int(c) for c in data["cat_ids"]], [str(n) for n in data["names"]],
                   float(data["conf"]), float(data["iou"]))


def _matches(gt: np.ndarray, det: np.ndarray, iou: float) -> tuple[np.ndarray, np.ndarray]:
    """(gt index, detection index) pairs above ``iou``, as Ultralytics picks them: each detection keeps its
    best-overlapping ground truth, then each ground truth its best-overlapping detection among those."""
    overlaps = box_iou(gt, det) if len(gt) and len(det) else np.zeros((len(gt), len(det)))
    g, d = np.nonzero(overlaps > iou)
    for keyed in (1, 0):  # unique detections, then unique ground truths; the best IoU first each time
        order = np.argsort(-overlaps[g, d], kind="stable")
        g, d = g[order], d[order]
        _, first = np.unique((g, d)[keyed], return_index=True)
        g, d = g[first], d[first]
    return g, d


def confusion_matrix(gt: Any, dets: Sequence[dict], image_ids: Sequence[int] | None = None, conf: float = CONF,
                     iou: float = IOU) -> Confusion:
    """The confusion of COCO results ``dets`` (``bbox`` xywh) against a faster-coco-eval ``COCO`` ground truth,
    over ``image_ids`` (default: every image); crowd regions are left out."""
    cat_ids = sorted(int(c) for c in gt.getCatIds())
    index = {c: k for k, c in enumerate(cat_ids)}
    background = len(cat_ids)
    matrix = np.zeros((background + 1, background + 1), dtype=np.int64)
    by_image: dict[int, list[dict]] = {}
    for d in dets:
        if d["score"] > conf:
            by_image.setdefault(int(d["image_id"]), []).append(d)
    for image_id in (image_ids if image_ids is not None else gt.getImgIds()):
        anns = [a for a in gt.loadAnns(gt.getAnnIds(imgIds=[int(image_id)])) if not a.get("iscrowd", 0)]
        found = by_image.get(int(image_id), [])
        true = np.asarray([index[int(a["category_id"])] for a in anns], dtype=np.int64)
        pred = np.asarray([index[int(d["category_id"])] for d in found], dtype=np.int64)
        g, d = _matches(_xyxy([a["bbox"] for a in anns]), _xyxy([x["bbox"] for x in found]), iou)
        np.add.at(matrix, (pred[d], true[g]), 1)
        np.add.at(matrix, (background, np.delete(true, g)), 1)  # missed ground truth
        np.add.at(matrix, (np.delete(pred, d), background), 1)  # false detections
    names = [str(gt.cats[c].get("name", c)) for c in cat_ids]
    return Confusion(matrix, cat_ids, names, conf, iou)


def _xyxy(boxes: list) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], 1)
