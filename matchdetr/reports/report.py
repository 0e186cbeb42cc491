"""Reports of a run or an evaluation: results.csv, per-class AP (table and bar chart), precision-recall
curves, training curves. Headless (matplotlib's Agg canvas, as ``visualize.py``); no torch.

    matchdetr report runs/exp1          # everything below, from the files a run leaves

Files (in the run directory, or the evaluation's ``--out``):

- ``results.csv``: one row per line of ``metrics.jsonl`` (training logs, evaluations), one column per key;
  written while training runs.
- ``per_class_ap.csv`` / ``per_class_ap.png`` (boxes), ``per_class_segm_ap.png`` (masks): AP and AP50 per
  category, sorted by AP.
- ``pr_curves.png``: precision against recall at IoU 0.5, at IoU 0.75 and averaged over IoU 0.5:0.95, all
  categories averaged (thick) and per category (thin, up to 20), from COCOeval's precision array
  (``pr_curves.npz``, written next to ``metrics.json``).
- ``confusion_matrix.png`` / ``confusion_matrix.csv``: detections scoring above 0.25 against the ground truth at
  IoU 0.5, rows predicted, columns true, with a background row (missed) and column (false detections), as
  Ultralytics draws it (``engine/confusion.py``, kept in ``confusion.npz``); ``per_class_ap.csv`` carries each
  class's precision ``P`` and recall ``R`` from it.
- ``training_curves.png``: :func:`matchdetr.reports.visualize.plot_training_curves`.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..engine.results_csv import ResultsCsv, csv_text, write_results_csv  # noqa: F401  (part of this API)
from ..io.files import atomic_write, atomic_write_text

__all__ = ["ResultsCsv", "write_results_csv", "write_per_class", "write_per_class_plots", "plot_per_class_ap",
           "plot_pr_curves", "write_confusion",
           "write_eval_report", "write_run_report"]

# ----------------------------------------------------------------------------------------------- per class
# Per-class metric columns by IoU type: boxes "AP"/"AP50", masks "segm_AP"/"segm_AP50" (engine/eval_result.py).
_KINDS = {"": "box", "segm_": "mask"}


def _prefixes(per_class: Sequence[dict]) -> list[str]:
    """The IoU types the rows carry ("" boxes, "segm_" masks), boxes first."""
    return [p for p in _KINDS if any(f"{p}AP" in c for c in per_class)]


def _per_class_rows(per_class: Sequence[dict], prefix: str = "") -> list[dict]:
    """Best first by ``prefix + 'AP'``; undefined values last."""
    k = f"{prefix}AP"
    key = lambda c: -c[k] if isinstance(c.get(k), (int, float)) and math.isfinite(c[k]) else math.inf  # noqa: E731
    return sorted(per_class, key=key)


def write_per_class(per_class: Sequence[dict], out_csv: str | os.PathLike) -> Path:
    """Per-class AP table as CSV, best first: category_id, name, AP and AP50 of the boxes and/or segm_AP and
    segm_AP50 of the masks (those the evaluation scored), P and R (boxes: precision and recall at the confusion
    matrix's threshold), num_gt, num_dets."""
    prefixes = _prefixes(per_class)
    pr = [k for k in ("P", "R") if any(k in c for c in per_class)]
    cols = ["category_id", "name", *(f"{p}{m}" for p in prefixes for m in ("AP", "AP50")), *pr, "num_gt", "num_dets"]
    atomic_write_text(out_csv, csv_text(cols, _per_class_rows(per_class, prefixes[0] if prefixes else "")))
    return Path(out_csv)


def write_per_class_plots(per_class: Sequence[dict], out: Path) -> list[Path]:
    """``per_class_ap.png`` (boxes) and ``per_class_segm_ap.png`` (masks), for the IoU types scored."""
    return [plot_per_class_ap(per_class, out / f"per_class_{p}ap.png", prefix=p) for p in _prefixes(per_class)]


def figure(size: tuple[float, float]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, out_png: str | os.PathLike) -> Path:
    atomic_write(out_png, lambda tmp: fig.savefig(tmp, format="png"))
    return Path(out_png)


def plot_per_class_ap(per_class: Sequence[dict], out_png: str | os.PathLike, title: str = "",
                      prefix: str = "") -> Path:
    """Horizontal bars of AP (and AP50, lighter) per category, best at the top; '-' where undefined.
    ``prefix``: "" for the box metrics, "segm_" for the mask metrics."""
    rows = _per_class_rows(per_class, prefix)
    fig = figure((8, max(2.5, 0.28 * len(rows) + 1.2)))
    ax = fig.subplots()
    names = [f"{r['name']} ({r['num_gt']})" for r in rows]
    ap = [r.get(f"{prefix}AP") if _finite(r.get(f"{prefix}AP")) else 0.0 for r in rows]
    ap50 = [r.get(f"{prefix}AP50") if _finite(r.get(f"{prefix}AP50")) else 0.0 for r in rows]
    y = np.arange(len(rows))[::-1]
    ax.barh(y, ap50, color="tab:blue", alpha=0.3, label="AP50")
    ax.barh(y, ap, color="tab:blue", label="AP")
    for yi, r, a in zip(y, rows, ap):
        ax.text(a, yi, f" {a:.1f}" if _finite(r.get(f"{prefix}AP")) else " -", va="center", fontsize=8)
    ax.set_yticks(y, names, fontsize=8)
    kind = _KINDS[prefix]
    ax.set(xlabel=f"{kind} AP (%)", title=title or f"per-class {kind} AP (#GT in brackets)",
           xlim=(0, max([1.0, *ap50]) * 1.15))
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, out_png)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


# ---------------------------------------------------------------------------------------------------- PR
def _mean_curve(p: np.ndarray) -> np.ndarray:
    """Mean precision over the categories with GT (p: ``[R, K]``, -1 where undefined) -> ``[R]``."""
    valid = p > -1
    return np.where(valid.any(1), np.where(valid, p, 0).sum(1) / np.maximum(valid.sum(1), 1), np.nan)


def plot_pr_curves(curves: dict[str, Any], out_png: str | os.PathLike, names: dict[int, str] | None = None,
                   max_classes: int = 20) -> Path:
    """Precision-recall at IoU 0.5, 0.75 and averaged over all IoU thresholds (COCO's 0.5:0.95).

    curves: ``precision [T, R, K]`` (-1 where undefined), ``iou_thrs [T]``, ``rec_thrs [R]``, ``cat_ids [K]``
    (EvalResult.curves or ``pr_curves.npz``). The mean over categories is drawn thick, each category thin.
    """
    precision = np.asarray(curves["precision"], dtype=np.float64)
    ious, recall = np.asarray(curves["iou_thrs"]), np.asarray(curves["rec_thrs"])
    cat_ids = [int(c) for c in curves["cat_ids"]]
    panels = [("IoU 0.5", precision[int(np.argmin(np.abs(ious - 0.5)))]),
              ("IoU 0.75", precision[int(np.argmin(np.abs(ious - 0.75)))]),
              ("IoU 0.5:0.95 (mean)", np.where((precision > -1).all(0), precision.mean(0), -1.0))]
    fig = figure((15, 4.8))
    axes = fig.subplots(1, 3)
    cmap = __import__("matplotlib").colormaps["tab20"]
    for ax, (title, p) in zip(axes, panels):
        for k, cid in enumerate(cat_ids[:max_classes]):
            if (p[:, k] > -1).any():
                ax.plot(recall, np.where(p[:, k] > -1, p[:, k], np.nan), linewidth=0.8, alpha=0.6, color=cmap(k % 20),
                        label=(names or {}).get(cid, str(cid)))
        mean = _mean_curve(p)
        ap = np.nanmean(mean) * 100 if np.isfinite(mean).any() else float("nan")
        ax.plot(recall, mean, color="black", linewidth=2.5, label=f"mean (AP {ap:.1f})")
        ax.set(title=title, xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7)
    return save_figure(fig, out_png)


# ------------------------------------------------------------------------------------------------ confusion
def write_confusion(confusion: Any, out: Path) -> list[Path]:
    """``confusion_matrix.csv`` (counts; rows predicted, columns true, background last) and
    ``confusion_matrix.png`` of a :class:`~matchdetr.engine.confusion.Confusion`."""
    labels = [*confusion.names, "background"]
    corner = "predicted \\ true"
    rows = [{corner: name, **dict(zip(labels, map(int, row)))} for name, row in zip(labels, confusion.matrix)]
    atomic_write_text(out / "confusion_matrix.csv", csv_text([corner, *labels], rows))
    return [out / "confusion_matrix.csv", plot_confusion(confusion, out / "confusion_matrix.png")]


def plot_confusion(confusion: Any, out_png: str | os.PathLike) -> Path:
    """The matrix coloured by each true class's share (columns sum to 1, Ultralytics' normalised plot), counts
    written in the cells."""
    m = np.asarray(confusion.matrix, dtype=np.float64)
    share = m / np.maximum(m.sum(0, keepdims=True), 1)
    labels = [*confusion.names, "background"]
    side = max(4.5, 0.45 * len(labels) + 2.5)
    fig = figure((side + 1, side))
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if len(labels) <= 30:  # counts stay legible
        for (i, j), count in np.ndenumerate(m.astype(np.int64)):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black")
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels, rotation=90, fontsize=8)
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set(xlabel="true (colour: share of the column)", ylabel="predicted",
           title=f"confusion matrix, score > {confusion.conf:g}, IoU > {confusion.iou:g}")
    fig.colorbar(image, ax=ax, shrink=0.8)
    return save_figure(fig, out_png)


# ----------------------------------------------------------------------------------------------- reports
def write_eval_report(result: Any, out_dir: str | os.PathLike) -> list[Path]:
    """per_class_ap.csv, per_class_ap.png (boxes) / per_class_segm_ap.png (masks), pr_curves.png and
    confusion_matrix.csv / .png for an EvalResult (``matchdetr eval --out``)."""
    out = Path(out_dir)
    written = []
    if result.per_class:
        written += [write_per_class(result.per_class, out / "per_class_ap.csv"),
                    *write_per_class_plots(result.per_class, out)]
    if result.curves is not None:
        names = {int(c["category_id"]): str(c["name"]) for c in result.per_class}
        written.append(plot_pr_curves(result.curves, out / "pr_curves.png", names))
    if result.confusion is not None:
        written += write_confusion(result.confusion, out)
    return written


def _saved_per_class(metrics_json: Path) -> list[dict]:
    """The per-class rows of an evaluation's ``metrics.json`` (null AP read as NaN). A file without usable rows
    (edited, cut short, from another tool) costs only the per-class and PR plots: a warning, not the report."""
    try:
        data = json.loads(metrics_json.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    rows = data.get("per_class") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(c, dict) and type(c.get("category_id")) is int for c in rows):
        warnings.warn(f"{metrics_json}: no per-class results (a 'per_class' list of objects with a category_id); "
                      "the per-class and PR plots are skipped", stacklevel=3)
        return []
    metric = {f"{p}{m}" for p in _KINDS for m in ("AP", "AP50")} | {"P", "R"}
    return [{k: (float("nan") if v is None and k in metric else v) for k, v in c.items()} for c in rows]


def write_run_report(run_dir: str | os.PathLike) -> list[Path]:
    """Everything for a run directory from its files: results.csv and training_curves.png (from
    metrics.jsonl), and the per-class, PR and confusion plots of its final evaluation (``eval/``)."""
    from .visualize import plot_training_curves

    run = Path(run_dir)
    metrics = run / "metrics.jsonl"
    if not metrics.exists():
        raise FileNotFoundError(f"{metrics}: not found (is {run} a run directory?)")
    # the curves first: a log without a record is refused before results.csv (training's own copy) is rewritten
    plot_training_curves(metrics, run / "training_curves.png")
    written = [write_results_csv(metrics, run / "results.csv"), run / "training_curves.png"]
    ev = run / "eval"
    if not (ev / "metrics.json").exists():
        warnings.warn(f"{ev / 'metrics.json'}: not found (a run trained with --no-val, or stopped before its "
                      "evaluation); the per-class, PR and confusion plots are skipped", stacklevel=2)
    else:
        per_class = _saved_per_class(ev / "metrics.json")
        if per_class:
            written += [write_per_class(per_class, run / "per_class_ap.csv"), *write_per_class_plots(per_class, run)]
        if (ev / "pr_curves.npz").exists():
            with np.load(ev / "pr_curves.npz") as data:
                curves = {k: data[k] for k in data.files}
            names = {int(c["category_id"]): str(c["name"]) for c in per_class}
            written.append(plot_pr_curves(curves, run / "pr_curves.png", names))
        if (ev / "confusion.npz").exists():
            from ..engine.confusion import Confusion

            with np.load(ev / "confusion.npz") as data:
                written += write_confusion(Confusion.from_arrays(data), run)
    return written
