"""Run a detector over a COCO-format split and score it (bbox AP in percent, per-class AP)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..boxes import xyxy_to_xywh
from ..config import Config
from ..data.coco import CocoDetection
from ..data.common import SplitPaths
from ..data.label_map import LabelMap
from ..data.transforms import build_transforms
from ..data.collate import collate
from ..data.sampler import EpochBatchSampler
from ..models.detector import Detector
from ..io.progress import Progress
from . import distributed as dist
from .coco_eval import EvalResult, evaluate_detections, write_results
from .coco_masks import masks_to_rle


def make_eval_loader(dataset: CocoDetection, batch_size: int, num_workers: int) -> DataLoader:
    sampler = EpochBatchSampler(len(dataset), batch_size, shuffle=False, rank=dist.rank(), world=dist.world_size(), pad=False)
    # Its own generator: creating the iterator must not draw from the global RNG (exact resume).
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers,
                      generator=torch.Generator().manual_seed(0), persistent_workers=False)


@torch.no_grad()
def predict_dataset(
    model: Detector, loader: DataLoader, device: torch.device, *, threshold: float = 0.0, autocast: Any = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """COCO results (``image_id``, ``category_id``, ``bbox`` xywh pixels, ``score``; an instance-segmentation
    model adds ``segmentation``, compressed RLE at the original size) for this process's share.

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
        for batch in loader:
            bar.update(len(batch))
            batch = batch.to(device)
            with autocast() if autocast else _null():
                out = model(batch.images, batch.pixel_mask)
            sizes = torch.tensor([t.orig_size for t in batch.targets], device=device)
            inputs = torch.tensor([t.size for t in batch.targets], device=device)
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
    finally:
        bar.close()
        model.train(was_training)
    return results


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def evaluate(
    model: Detector, dataset: CocoDetection, device: torch.device, *, batch_size: int = 8, num_workers: int = 2,
    out_dir: str | os.PathLike | None = None, threshold: float = 0.0, autocast: Any = None, progress: bool = True,
) -> EvalResult | None:
    """Predict on every image of ``dataset`` (split across processes) and score on the main process.

    Writes ``out_dir/results.json`` (COCO results) and ``out_dir/metrics.json`` when ``out_dir`` is given.
    Returns the EvalResult on the main process and None on the others.
    """
    if getattr(dataset, "masks", False):  # a mask model: its GT masks checked before predicting, on every process
        from .mask_data import check_scoring_gt

        check_scoring_gt(dataset)
    loader = make_eval_loader(dataset, batch_size, num_workers)
    local = predict_dataset(model, loader, device, threshold=threshold, autocast=autocast, progress=progress)
    gathered = dist.all_gather_objects(local)
    if not dist.is_main():
        return None
    results = [r for part in gathered for r in part]  # type: ignore[union-attr]
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        write_results(results, Path(out_dir) / "results.json")
    # an instance-segmentation model is scored on its masks too (segm_* metrics beside the box ones)
    iou_type = ("bbox", "segm") if any("segmentation" in r for r in results) else "bbox"
    return evaluate_detections(dataset.coco_gt, results, out_dir=out_dir, image_ids=dataset.image_ids,
                               iou_type=iou_type)


def eval_dataset(config: Config, label_map: LabelMap, paths: SplitPaths) -> CocoDetection:
    """The split ``paths`` as a model of ``config`` / ``label_map`` is evaluated on it: its own test-time
    transforms and label map, so dataset category ids map to the model's labels as in training. An unreadable
    image is scored as one without detections, never replaced by another; a mask model reads the masks (its
    matcher, for the unstable score and the error analysis, compares masks too)."""
    return CocoDetection(paths, build_transforms(config.data, train=False), label_map, substitute=False,
                         masks=config.data.masks)
