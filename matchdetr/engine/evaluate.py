"""Run a detector over a COCO-format split and score it (bbox AP in percent, per-class AP, the confusion matrix,
and with a criterion the validation loss).

**One answer per image.** Each image is padded to its own canvas, its test-time size rounded up to
``data.sizes.CANVAS_MULTIPLE`` (32), and only images of one canvas share a batch (``CanvasBatchSampler``,
``collate_canvases``). An image's detections therefore do not depend on the batch size, on which images are
evaluated beside it, or on the number of processes: ``eval --batch-size 1`` and ``8``, the evaluation printed by
``train`` and a later ``eval`` give the same detections up to float rounding. Results are written in the
dataset's image order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Hashable

import torch
from torch.utils.data import DataLoader

from ..boxes import xyxy_to_xywh
from ..config import Config
from ..data.coco import CocoDetection
from ..data.collate import Batch, collate_canvases
from ..data.sizes import canvas
from ..data.common import SplitPaths
from ..data.label_map import LabelMap
from ..data.sampler import CanvasBatchSampler
from ..data.transforms import build_transforms
from ..losses.criterion import SetCriterion
from ..models.detector import Detector
from ..models.plugins.mask_head import every_layer_masks
from ..io.progress import Progress
from . import distributed as dist
from .coco_eval import EvalResult, evaluate_detections, write_results
from .coco_masks import masks_to_rle
from .confusion import CONF
from .val_loss import ValLoss


def canvas_keys(dataset: CocoDetection) -> list[Hashable]:
    """The canvas of every image, from its annotated size and the dataset's test-time resize (None where the
    transforms do not fix the size: each such image is then batched alone)."""
    fixed = getattr(dataset.transforms, "output_size", None)
    keys: list[Hashable] = []
    for i in range(len(dataset)):
        info = dataset.image_info(i)
        size = fixed((int(info["width"]), int(info["height"]))) if fixed is not None else None
        keys.append(None if size is None else canvas(size))
    return keys


def make_eval_loader(dataset: CocoDetection, batch_size: int, num_workers: int) -> DataLoader:
    """Batches of up to ``batch_size`` images of one canvas (this process's share); each loader item is a list
    of ``(positions, Batch)``, one per canvas (one unless an image decodes to another size than annotated)."""
    sampler = CanvasBatchSampler(canvas_keys(dataset), batch_size, rank=dist.rank(), world=dist.world_size())
    # Its own generator: creating the iterator must not draw from the global RNG (exact resume).
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_canvases, num_workers=num_workers,
                      generator=torch.Generator().manual_seed(0), persistent_workers=False)


def _results(model: Detector, batch: Batch, out: Any, label_map: LabelMap, unscored: set[int],
             threshold: float) -> list[dict[str, Any]]:
    """COCO results entries of one forward's images."""
    device = batch.images.device
    sizes = torch.tensor([t.orig_size for t in batch.targets], device=device)
    inputs = torch.tensor([t.size for t in batch.targets], device=device)
    results: list[dict[str, Any]] = []
    for tgt, det in zip(batch.targets, model.postprocessor(out.final, sizes, inputs)):
        if not tgt.readable:
            continue
        det = det.select(det.scores > threshold)
        boxes = xyxy_to_xywh(det.boxes).cpu().tolist()
        rles = masks_to_rle(det.masks.cpu()) if det.masks is not None else [None] * len(boxes)
        for box, score, label, rle in zip(boxes, det.scores.cpu().tolist(), det.labels.cpu().tolist(), rles):
            if label in unscored:
                continue
            entry = {"image_id": int(tgt.image_id), "category_id": label_map.to_category(int(label)),
                     "bbox": [round(v, 2) for v in box], "score": round(float(score), 5)}
            if rle is not None:
                entry["segmentation"] = rle
            results.append(entry)
    return results


@torch.no_grad()
def predict_dataset(
    model: Detector, loader: DataLoader, device: torch.device, *, threshold: float = 0.0, autocast: Any = None,
    progress: bool = True, val_loss: ValLoss | None = None,
) -> list[dict[str, Any]]:
    """COCO results (``image_id``, ``category_id``, ``bbox`` xywh pixels, ``score``; an instance-segmentation
    model adds ``segmentation``, compressed RLE at the original size) for this process's share, in the
    dataset's image order. ``val_loss``: accumulates the criterion on each forward.

    Images whose file could not be decoded (``Target.readable`` False) contribute no detections: they are scored
    as images the model found nothing in, under their own id, never another image's."""
    label_map = loader.dataset.label_map
    unscored = getattr(loader.dataset, "unscored_labels", set())  # model classes the dataset does not have
    was_training = model.training
    model.eval()
    results: list[dict[str, Any]] = []
    # a bar on a terminal, plain lines in a log file (tqdm's carriage returns would fill it)
    total = sum(len(b) for b in loader.batch_sampler) if loader.batch_sampler is not None else len(loader.dataset)
    bar = Progress(total, "eval", "images", enabled=progress and dist.is_main())  # this process's images
    try:
        for groups in loader:
            for _, batch in groups:
                bar.update(len(batch))
                batch = batch.to(device)
                # the validation loss reads every layer's masks, which eval mode otherwise skips (Mask-DINO)
                masks = every_layer_masks(model) if val_loss is not None else _null()
                with autocast() if autocast else _null(), masks:
                    out = model(batch.images, batch.pixel_mask)
                if val_loss is not None:
                    val_loss.add(out, batch.targets)
                results += _results(model, batch, out, label_map, unscored, threshold)
    finally:
        bar.close()
        model.train(was_training)
    return in_image_order(results, loader.dataset.image_ids)


def in_image_order(results: list[dict[str, Any]], image_ids: list[int]) -> list[dict[str, Any]]:
    """``results`` sorted by their image's place in the dataset (stable: each image's detections keep theirs)."""
    place = {int(i): k for k, i in enumerate(image_ids)}
    return sorted(results, key=lambda r: place.get(int(r["image_id"]), len(place)))


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def evaluate(
    model: Detector, dataset: CocoDetection, device: torch.device, *, batch_size: int = 8, num_workers: int = 2,
    out_dir: str | os.PathLike | None = None, threshold: float = 0.0, autocast: Any = None, progress: bool = True,
    criterion: SetCriterion | None = None, conf: float = CONF,
) -> EvalResult | None:
    """Predict on every image of ``dataset`` (split across processes) and score on the main process.

    The detections of an image do not depend on ``batch_size`` (module doc). Writes ``out_dir/results.json``
    (COCO results), ``metrics.json``, ``pr_curves.npz`` and ``confusion.npz`` (the box confusion matrix at score
    > ``conf``, IoU 0.5) when ``out_dir`` is given.
    ``criterion``: also the validation loss (``EvalResult.losses``: ``val_loss`` and ``val_<term>``), computed
    in eval mode without touching the global random state. Returns the EvalResult on the main process and None
    on the others.
    """
    if getattr(dataset, "masks", False):  # a mask model: its GT masks checked before predicting, on every process
        from .mask_data import check_scoring_gt

        check_scoring_gt(dataset)
    loader = make_eval_loader(dataset, batch_size, num_workers)
    val_loss = ValLoss(criterion, device) if criterion is not None else None
    local = predict_dataset(model, loader, device, threshold=threshold, autocast=autocast, progress=progress,
                            val_loss=val_loss)
    gathered = dist.all_gather_objects((local, val_loss.sums() if val_loss is not None else None))
    if not dist.is_main():
        return None
    results = in_image_order([r for part, _ in gathered for r in part], dataset.image_ids)  # type: ignore[misc]
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        write_results(results, Path(out_dir) / "results.json")
    # an instance-segmentation model is scored on its masks too (segm_* metrics beside the box ones)
    iou_type = ("bbox", "segm") if any("segmentation" in r for r in results) else "bbox"
    result = evaluate_detections(dataset.coco_gt, results, out_dir=out_dir, image_ids=dataset.image_ids,
                                 iou_type=iou_type, conf=conf)
    if val_loss is not None:
        result.losses = ValLoss.mean([s for _, s in gathered])  # type: ignore[misc]
    return result


def eval_dataset(config: Config, label_map: LabelMap, paths: SplitPaths) -> CocoDetection:
    """The split ``paths`` as a model of ``config`` / ``label_map`` is evaluated on it: its own test-time
    transforms and label map, so dataset category ids map to the model's labels as in training. An unreadable
    image is scored as one without detections, never replaced by another; a mask model reads the masks (its
    matcher, for the unstable score and the error analysis, compares masks too)."""
    return CocoDetection(paths, build_transforms(config.data, train=False), label_map, substitute=False,
                         masks=config.data.masks)
