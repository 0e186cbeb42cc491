"""The stable Python API: build, load, save, predict.

    det = matchdetr.build("detr-tiny", num_classes=10)
    det = matchdetr.load("runs/demo")            # a run directory (newest weights) or a .safetensors file
    det.save("model.safetensors")
    det.predict(["a.jpg", pil_image, uint8_array], threshold=0.3)
"""

from __future__ import annotations

import copy
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import presets
from .config import Config, ConfigError, apply_overrides
from .compose import from_config
from .data.label_map import LabelMap
from .engine.checkpoint import CheckpointError, load_weights, newest_weights, save_model
from .models.detector import Detector

_SECTIONS = ("model.", "data.", "train.")


def _normalise_key(key: str) -> str:
    """``transformer__num_queries`` or ``transformer.num_queries`` -> ``model.transformer.num_queries``."""
    key = key.replace("__", ".")
    return key if key.startswith(_SECTIONS) else f"model.{key}"


def build_config(name: str, num_classes: int | None = None, overrides: dict[str, Any] | None = None) -> Config:
    cfg = presets.get(name)
    if num_classes is not None:
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        cfg.model.num_classes = num_classes
    apply_overrides(cfg, {_normalise_key(k): v for k, v in (overrides or {}).items()})
    return cfg


def without_backbone_file(cfg: Config) -> Config:
    """A copy of ``cfg`` that builds without reading ``model.backbone.weights``: for a model whose weights are
    about to be loaded from a checkpoint, the backbone file is inside them already; reading it again would be
    wasted work, and an error once the file has moved."""
    out = copy.deepcopy(cfg)
    out.model.backbone.weights = ""
    return out


def build(name: str, num_classes: int | None = None, **overrides: Any) -> Detector:
    """A freshly initialised Detector for preset ``name``.

    overrides: config values by dotted path relative to ``model`` (``transformer.num_queries=100``, or with
    ``__`` for ``.`` as keyword names: ``transformer__num_queries=100``); ``data.*`` / ``train.*`` keys too.
    """
    return from_config(build_config(name, num_classes, overrides))


def save(detector: Detector, path: str | os.PathLike, iteration: int | None = None, run_id: str | None = None) -> None:
    """One safetensors file: weights + config + label map, everything :func:`load` needs (plus, from
    training, the iteration and the id of the run that wrote it)."""
    save_model(detector, path, iteration, run_id)


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Detector:
    """Load a Detector from a checkpoint file or a run directory (its newest complete weights)."""
    weights = newest_weights(path)
    state, meta = load_weights(weights)
    if "config" not in meta or "label_map" not in meta:
        raise CheckpointError(f"{weights}: metadata lacks config/label_map")
    cfg = Config.from_dict(meta["config"])
    detector = from_config(without_backbone_file(cfg), LabelMap.from_dict(meta["label_map"]))
    detector.config = cfg  # as saved, model.backbone.weights included (where the backbone started from)
    missing, unexpected = _diff_keys(detector.state_dict(), state)
    if missing or unexpected:
        raise CheckpointError(f"{weights}: weights do not fit preset '{cfg.preset}': missing {missing[:5]}, unexpected {unexpected[:5]}")
    try:
        detector.load_state_dict(state)
    except RuntimeError as err:  # shape mismatches
        raise CheckpointError(f"{weights}: weights do not fit preset '{cfg.preset}': {str(err).splitlines()[-1].strip()}") from None
    return detector.to(map_location).eval()


def eval_split(detector: Detector, paths: Any) -> Any:
    """The split ``paths`` (a resolved ``SplitPaths``) as ``detector`` is evaluated on it: its own test-time
    transforms and label map, so dataset category ids map to the model's labels as in training."""
    from .data.coco import CocoDetection
    from .data.transforms import build_transforms

    assert detector.config is not None
    # substitute=False: an unreadable image is scored as one without detections, never replaced by another
    # masks for a mask model: its matcher (unstable score, error analysis) compares masks too
    return CocoDetection(paths, build_transforms(detector.config.data, train=False), detector.label_map,
                         substitute=False, masks=detector.config.data.masks)


def _diff_keys(expected: dict[str, Any], got: dict[str, Any]) -> tuple[list[str], list[str]]:
    return sorted(set(expected) - set(got)), sorted(set(got) - set(expected))


# ----------------------------------------------------------------------------------------------- predict
def _as_pil(item: Any) -> Image.Image:
    from .data.images import load_rgb, to_rgb

    if isinstance(item, (str, Path)):
        return load_rgb(item)
    if isinstance(item, Image.Image):
        return to_rgb(item)
    if isinstance(item, np.ndarray):
        if item.ndim != 3 or item.shape[2] != 3 or item.dtype != np.uint8:
            raise ValueError(f"array images must be HxWx3 uint8, got shape {item.shape} dtype {item.dtype}")
        return Image.fromarray(item)
    raise TypeError(f"cannot read an image from {type(item).__name__}; pass a path, a PIL image or an HxWx3 uint8 array")


@torch.no_grad()
def predict(detector: Detector, images: Any, threshold: float = 0.3, batch_size: int = 4) -> list[dict[str, Any]]:
    """Detections per image: ``boxes`` ``[K, 4]`` xyxy pixels of the original image, ``scores`` ``[K]``,
    ``labels`` ``[K]`` dataset category ids, ``names`` (K strings); an instance-segmentation model adds
    ``masks`` ``[K, H, W]`` bool.

    The shape of HF transformers' ``post_process_object_detection`` for focal-loss DETRs (top-k over queries x
    classes, then ``score > threshold``, sorted by score; tested against it), plus ``names``; boxes are clipped
    to the image. :func:`matchdetr.inference.predict_io.to_coco_results` turns them into COCO results entries."""
    from .data.collate import collate
    from .data.transforms import build_transforms

    items = list(images) if isinstance(images, (list, tuple)) else [images]
    pils = [_as_pil(i) for i in items]
    assert detector.config is not None and detector.label_map is not None
    transform = build_transforms(detector.config.data, train=False)
    device = next(detector.parameters()).device
    was_training = detector.training
    detector.eval()
    results: list[dict[str, Any]] = []
    try:
        for start in range(0, len(pils), batch_size):
            chunk = pils[start : start + batch_size]
            samples = [_preprocess(img, transform) for img in chunk]
            batch = collate(samples).to(device)
            out = detector(batch.images, batch.pixel_mask)
            sizes = torch.tensor([[img.height, img.width] for img in chunk], device=device)
            inputs = torch.tensor([list(t.size) for t in batch.targets], device=device)
            for img, det in zip(chunk, detector.postprocessor(out.final, sizes, inputs)):
                results.append(_to_user(det.select(det.scores > threshold), img, detector.label_map))
    finally:
        detector.train(was_training)
    return results


def _preprocess(img: Image.Image, transform: Any) -> tuple[torch.Tensor, Any]:
    from .structures import Target

    empty = torch.zeros(0, 4)
    tensor, boxes, labels, size = transform(img, empty, torch.zeros(0, dtype=torch.long), random.Random(0))
    return tensor, Target(boxes, labels, image_id=0, orig_size=(img.height, img.width), size=size)


def _to_user(det: Any, img: Image.Image, lm: LabelMap) -> dict[str, Any]:
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


# det.predict(...) and det.save(...): the Detector calls these (models/ does not import this module)
Detector.conveniences.update(predict=predict, save=save)
