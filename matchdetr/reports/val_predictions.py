"""``predictions.png``: a trained model's detections on the first validation images, ground truth dashed (what
``matchdetr train`` leaves in the run directory, and the demo shows)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# Scores of a short CPU run are low (Stable-DINO's are IoU-aware: a right box scores ~0.2-0.4 after the demo), so
# each image shows its 10 best detections above 0.15 rather than a near-empty picture at the usual 0.3.
THRESHOLD, TOP, IMAGES = 0.15, 10, 8


def save_val_predictions(module: Any, config: Any, label_map: Any, out_png: str | os.PathLike,
                         images: int = IMAGES, threshold: float = THRESHOLD, top: int = TOP) -> Path | None:
    """Draw the detections of ``module`` (with its ``config`` and ``label_map``) on the first ``images`` images of
    the validation split ``config.data`` names; None when the split has no image. Scores are printed on every
    box; the ground truth is drawn dashed (``visualize.save_prediction_grid``)."""
    from ..data.coco import CocoDetection
    from ..data.images import ImageLoadError
    from ..data.splits import resolve_split
    from ..inference.predict import predict_images
    from .visualize import save_prediction_grid

    d = config.data
    val = CocoDetection(resolve_split(d.path, "val", d.val_images, d.val_annotations), transforms=None,
                        label_map=label_map)
    pils, gts = [], []
    for i in range(len(val)):
        if len(pils) == images:
            break
        try:
            pils.append(val.load_image(i))
        except ImageLoadError:  # reported by the evaluation already
            continue
        gts.append(val.ground_truth(i))
    if not pils:
        return None
    dets = [_top(det, top) for det in predict_images(module, config, label_map, pils, threshold=threshold)]
    save_prediction_grid(pils, dets, out_png, gts=gts)
    return Path(out_png)


def write_run_predictions(result: Any) -> Path | None:
    """``RUN/predictions.png`` for a finished run (a ``TrainResult``): what ``train`` leaves beside its weights;
    on the main process only (elsewhere the result holds no model)."""
    if result.module is None:
        return None
    out = Path(result.run_dir) / "predictions.png"
    return save_val_predictions(result.module, result.config, result.label_map, out)


def _top(det: dict, k: int) -> dict:
    order = det["scores"].argsort(descending=True)[:k]
    names = [det["names"][int(i)] for i in order]
    return {"boxes": det["boxes"][order], "scores": det["scores"][order], "names": names}
