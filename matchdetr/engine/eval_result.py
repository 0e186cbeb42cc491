"""What a COCO evaluation returns (``coco_eval.evaluate_detections``): metrics, per-class AP, the PR curves.

Box metrics carry COCO's names (``AP``, ``AP50``, ... as :data:`METRIC_NAMES`); mask metrics the same names
after :data:`SEGM_PREFIX` (``segm_AP``, ``segm_AP50``, ...), so both sit side by side in one ``metrics`` dict,
one ``metrics.jsonl`` record and one ``metrics.json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["METRIC_NAMES", "SEGM_PREFIX", "IOU_PREFIXES", "EvalResult"]

# Order of COCOeval.stats[:12] for bbox and segm evaluation.
METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
SEGM_PREFIX = "segm_"
IOU_PREFIXES = {"bbox": "", "segm": SEGM_PREFIX}  # COCOeval iouType -> prefix of its metric names


@dataclass
class EvalResult:
    """Outcome of a COCO evaluation (box, mask, or both).

    metrics:   METRIC_NAMES (boxes) and/or ``segm_`` + METRIC_NAMES (masks) -> value in percent; NaN where COCO
               leaves the metric undefined.
    per_class: one dict per GT category, sorted by id: category_id, name, AP, AP50 (boxes) and/or segm_AP,
               segm_AP50 (masks) (percent, NaN when the category has no GT), num_gt (non-crowd GT
               annotations), num_dets; with boxes P and R, precision and recall at the confusion matrix's
               score threshold (percent, NaN when undefined).
    confusion: the box confusion matrix (``engine/confusion.py``), None without boxes.
    """

    metrics: dict[str, float]
    per_class: list[dict] = field(default_factory=list)
    # Precision-recall curves for plots (matchdetr/reports.py): "precision" [T, R, K] at area "all", maxDets
    # 100 (-1 where a category has no GT), "iou_thrs" [T], "rec_thrs" [R], "cat_ids" [K]; None when not scored.
    # Of the boxes when they were scored, else of the masks.
    curves: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    # The validation loss when the evaluation was given the criterion (training's evaluations): ``val_loss``
    # (the weighted total) and ``val_loss_<term>`` per term, image-weighted means over the split.
    losses: dict[str, float] = field(default_factory=dict)
    confusion: Any = field(default=None, repr=False, compare=False)

    def _prefixes(self) -> list[str]:
        return [p for p in IOU_PREFIXES.values() if f"{p}AP" in self.metrics]

    def table(self) -> str:
        """Terminal summary: the 12 COCO metrics in two rows (per IoU type), then a per-class AP table."""
        lines = []
        for prefix in self._prefixes():
            if prefix:
                lines.append(f"{prefix.rstrip('_')}:")
            for names in (METRIC_NAMES[:6], METRIC_NAMES[6:]):
                lines.append("  ".join(f"{n:>6}" for n in names))
                lines.append("  ".join(f"{_fmt(self.metrics.get(prefix + n)):>6}" for n in names))
        if self.per_class:
            width = max(8, *(len(str(c["name"])) for c in self.per_class))
            cols = {f"{p}{n}": max(6, len(p + n)) for p in self._prefixes() for n in ("AP", "AP50")}  # -> width
            cols.update({k: 6 for k in ("P", "R") if any(k in c for c in self.per_class)})
            header = f"{'category':<{width}}  {'id':>5}  " + "  ".join(f"{k:>{w}}" for k, w in cols.items())
            lines += ["", header + f"  {'#gt':>6}  {'#dets':>7}", "-" * (len(header) + 17)]
            for c in self.per_class:
                values = "  ".join(f"{_fmt(c.get(k)):>{w}}" for k, w in cols.items())
                lines.append(f"{str(c['name']):<{width}}  {c['category_id']:>5}  {values}  {c['num_gt']:>6}  "
                             f"{c['num_dets']:>7}")
            if "P" in cols and self.confusion is not None:
                lines.append(f"(P, R: precision and recall of the detections scoring above {self.confusion.conf:g} "
                             f"at IoU {self.confusion.iou:g})")
        return "\n".join(lines)

    def to_json(self) -> dict:
        """JSON-safe dict {"metrics", "per_class"}; NaN becomes None (JSON has no NaN)."""
        out = {
            "metrics": {k: _nan_to_none(v) for k, v in self.metrics.items()},
            "per_class": [{k: _nan_to_none(v) for k, v in c.items()} for c in self.per_class],
        }
        if self.losses:
            out["losses"] = {k: _nan_to_none(v) for k, v in self.losses.items()}
        return out


def _fmt(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.1f}"


def _nan_to_none(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value
