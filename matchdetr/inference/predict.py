"""Detections of a detector on images given as paths, PIL images or arrays: its own test-time transforms, one
forward per batch, post-processing to the original image, labels as the dataset's category ids."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..config import Config
from ..data.collate import collate
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
    to the image. :func:`matchdetr.inference.predict_io.to_coco_results` turns them into COCO results entries."""
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    pils = [as_rgb(i) for i in items]  # the one input rule (io/decode.py), also the ONNX path's
    transform = build_transforms(config.data, train=False)
    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    results: list[dict[str, Any]] = []
    try:
        for start in range(0, len(pils), batch_size):
            chunk = pils[start : start + batch_size]
            batch = collate([_preprocess(img, transform) for img in chunk]).to(device)
            out = module(batch.images, batch.pixel_mask)
            sizes = torch.tensor([[img.height, img.width] for img in chunk], device=device)
            inputs = torch.tensor([list(t.size) for t in batch.targets], device=device)
            for img, det in zip(chunk, module.postprocessor(out.final, sizes, inputs)):
                results.append(_to_user(det.select(det.scores > threshold), img, label_map))
    finally:
        module.train(was_training)
    return results
