"""Detections of a detector on images given as paths, PIL images or arrays: its own test-time transforms, one
forward per batch, post-processing to the original image, labels as the dataset's category ids.

One answer per image, as in evaluation (``engine/evaluate.py``): each image is padded to its own canvas (its
test-time size rounded up to ``data.sizes.CANVAS_MULTIPLE``) and batched only with images of that canvas, so
its detections are the same alone, in any list and at any ``batch_size``."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..config import Config
from ..data.collate import collate
from ..data.sizes import CANVAS_MULTIPLE, canvas
from ..data.label_map import LabelMap
from ..io.decode import as_rgb
from ..data.transforms import build_transforms
from ..models.detector import Detector
from ..structures import Detections, Target


def _preprocess(img: Image.Image, transform: Any) -> tuple[torch.Tensor, Target]:
    empty = torch.zeros(0, 4)
    tensor, boxes, labels, size = transform(img, empty, torch.zeros(0, dtype=torch.long), random.Random(0))
    return tensor, Target(boxes, labels, image_id=0, orig_size=(img.height, img.width), size=size)


def _to_user(det: Detections, img: Image.Image, lm: LabelMap) -> dict[str, Any]:
    w, h = img.width, img.height
    boxes = det.boxes.clone().cpu()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    labels = det.labels.cpu()
    out = {
        "boxes": boxes,
        "scores": det.scores.cpu(),
        "labels": torch.tensor([lm.to_category(int(l)) for l in labels], dtype=torch.long),
        "names": [lm.names[int(l)] for l in labels],
    }
    if det.masks is not None:  # instance segmentation: [K, H, W] bool of the original image
        out["masks"] = det.masks.cpu()
    return out


@torch.no_grad()
def predict_images(module: Detector, config: Config, label_map: LabelMap, images: Any, threshold: float = 0.3,
                   batch_size: int = 4) -> list[dict[str, Any]]:
    """Detections per image: ``boxes`` ``[K, 4]`` xyxy pixels of the original image, ``scores`` ``[K]``,
    ``labels`` ``[K]`` dataset category ids, ``names`` (K strings); an instance-segmentation model adds
    ``masks`` ``[K, H, W]`` bool.

    The shape of HF transformers' ``post_process_object_detection`` for focal-loss DETRs (top-k over queries x
    classes, then ``score > threshold``, sorted by score; tested against it), plus ``names``; boxes are clipped
    to the image. :func:`matchdetr.inference.predict_io.to_coco_results` turns them into COCO results entries.
    Results come in the order of ``images``; an image's detections do not depend on the others (module doc)."""
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    pils = [as_rgb(i) for i in items]  # the one input rule (io/decode.py), also the ONNX path's
    transform = build_transforms(config.data, train=False)
    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    results: list[dict[str, Any] | None] = [None] * len(pils)
    try:
        for chunk in _canvas_batches(pils, transform, batch_size):
            batch = collate([_preprocess(pils[i], transform) for i in chunk], CANVAS_MULTIPLE).to(device)
            out = module(batch.images, batch.pixel_mask)
            sizes = torch.tensor([[pils[i].height, pils[i].width] for i in chunk], device=device)
            inputs = torch.tensor([list(t.size) for t in batch.targets], device=device)
            for i, det in zip(chunk, module.postprocessor(out.final, sizes, inputs)):
                results[i] = _to_user(det.select(det.scores > threshold), pils[i], label_map)
    finally:
        module.train(was_training)
    return results  # type: ignore[return-value]


def _canvas_batches(pils: list[Image.Image], transform: Any, batch_size: int) -> list[list[int]]:
    """Positions of ``pils`` in batches of at most ``batch_size`` images of one canvas."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, img in enumerate(pils):
        groups.setdefault(canvas(transform.output_size((img.width, img.height))), []).append(i)
    return [g[b : b + batch_size] for g in groups.values() for b in range(0, len(g), batch_size)]
