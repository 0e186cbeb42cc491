"""Run an exported model with onnxruntime, numpy and PIL only: no torch import anywhere on this path.

    matchdetr predict --model model.onnx images/ --out preds/

The preprocessing and post-processing are those of :func:`matchdetr.api.predict`, re-written in numpy and
read from the metadata ``matchdetr export`` stores in the file:

- decode: EXIF orientation applied, any mode to 8-bit RGB (transparency composited over white);
- resize: DETR's shorter side -> ``test_size``, longer side capped at ``test_max_size`` (``int`` truncation
  kept), PIL bilinear;
- normalise: ``(x / 255 - mean) / std`` in float32; each image zero-padded top-left to its canvas (its size
  rounded up to ``canvas_multiple``; 1 for a graph without ``pixel_mask``), only images of one canvas batched
  together, so an image's detections do not depend on its neighbours; ``pixel_mask`` True on padding;
- post-process: sigmoid, top-k over (queries x classes), boxes scaled to the original image; for an
  instance-segmentation model each detection's mask (stride-4 logits bilinear to the padded input, the image
  cut out, bilinear to the original size, logit > 0) and its score times the mask's mean probability
  (``models/postprocess.py: instance_masks``); optional class-aware NMS, score threshold (strictly above),
  boxes clamped to the image.

Results are HF-style dicts with numpy values: ``scores [K]``, ``labels [K]`` (dataset category ids),
``boxes [K, 4]`` xyxy pixels, ``names``, and ``masks [K, H, W]`` bool where the model predicts masks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..boxes_numpy import box_iou
from ..data.sizes import canvas, resized_hw  # the one size and canvas rule: the PyTorch path's input sizes
from ..io.decode import as_rgb, load_rgb  # the one decoder and input rule: the same pixels as the PyTorch path

META_KEY = "matchdetr"  # the same key as matchdetr.inference.export.META_KEY (not imported: it would import torch)




def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


def _resize_axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of torch's bilinear resize along one axis (``align_corners=False``, no
    antialias): source ``max((o + 0.5) * n_in / n_out - 0.5, 0)``, in float32 as torch computes it."""
    scale = np.float32(n_in) / np.float32(n_out)
    src = np.maximum((np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5), 0)
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, np.minimum(src - i0.astype(np.float32), np.float32(1))


def resize_bilinear(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """``x [K, h, w]`` -> ``[K, out_h, out_w]`` float32, as ``F.interpolate(mode="bilinear",
    align_corners=False)`` (separable: rows, then columns)."""
    x = x.astype(np.float32, copy=False)
    i0, i1, lam = _resize_axis(x.shape[1], out_h)
    x = x[:, i0] * (1 - lam)[None, :, None] + x[:, i1] * lam[None, :, None]
    j0, j1, mu = _resize_axis(x.shape[2], out_w)
    return x[:, :, j0] * (1 - mu) + x[:, :, j1] * mu


def instance_masks(logits: np.ndarray, input_hw: tuple[int, int], orig_hw: tuple[int, int]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """numpy twin of ``models/postprocess.py: instance_masks``: logits ``[K, h, w]`` at stride 4 of the padded
    batch -> bool masks ``[K, H, W]`` of the original image and each mask's mean probability inside it."""
    h4, w4 = logits.shape[-2:]
    up = resize_bilinear(logits, 4 * h4, 4 * w4)[:, : input_hw[0], : input_hw[1]]
    up = resize_bilinear(up, *orig_hw)
    masks = up > 0
    # the sigmoid only where it is summed (logit > 0: no overflow in float32, no float64 copy of [K, H, W])
    prob = np.where(masks, np.float32(1) / (np.float32(1) + np.exp(-np.maximum(up, np.float32(0)))), np.float32(0))
    inside = masks.reshape(len(masks), -1).sum(1)
    return masks, (prob.reshape(len(masks), -1).sum(1) / (inside + np.float32(1e-6))).astype(np.float32)


def class_aware_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS within each label (``matchdetr.ops.nms.batched_nms``): kept indices by decreasing score."""
    order = np.argsort(-scores, kind="stable")
    over = box_iou(boxes[order], boxes[order]) > iou
    over &= labels[order][:, None] == labels[order][None, :]
    keep = np.ones(len(order), dtype=bool)
    for i in range(len(order)):
        if keep[i]:
            keep[i + 1 :] &= ~over[i, i + 1 :]
    return order[keep]


class OnnxDetector:
    """An exported matchdetr model in an onnxruntime session; :meth:`predict` mirrors ``Detector.predict``."""

    def __init__(self, path: str | os.PathLike, providers: Sequence[str] | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            from .predict_io import MissingExtra

            raise MissingExtra("running an ONNX model needs onnxruntime: pip install onnxruntime (in the matchdetr "
                               "checkout: pip install '.[onnx]')") from None
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        try:
            self.session = ort.InferenceSession(str(path), providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as err:
            raise ValueError(f"{path}: onnxruntime cannot load it ({' '.join(str(err).split())[:200]})") from None
        raw = self.session.get_modelmeta().custom_metadata_map.get(META_KEY)
        if raw is None:
            raise ValueError(f"{path}: no matchdetr metadata; export the model with `matchdetr export`")
        self.meta: dict[str, Any] = json.loads(raw)
        labels = self.meta["label_map"]
        self.category_ids: list[int] = [int(c) for c in labels["category_ids"]]
        self.names: list[str] = [str(n) for n in labels["names"]]
        self.mean = np.asarray(self.meta["mean"], dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(self.meta["std"], dtype=np.float32).reshape(3, 1, 1)
        # an instance-segmentation export also outputs mask logits (matchdetr.inference.export)
        self.outputs = ["logits", "boxes"] + (["masks"] if "masks" in {o.name for o in self.session.get_outputs()}
                                              else [])

    def preprocess(self, images: Sequence[Image.Image]) -> dict[str, np.ndarray]:
        """Resize, normalise and pad like the PyTorch path: ``images [B, 3, H, W]`` and ``pixel_mask``."""
        arrays = []
        for img in images:
            h, w = resized_hw(img.size, self.meta["test_size"], self.meta["test_max_size"])
            if (w, h) != img.size:
                img = img.resize((w, h), Image.Resampling.BILINEAR)
            x = np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)
            arrays.append((x - self.mean) / self.std)
        height, width = self._canvas((max(a.shape[1] for a in arrays), max(a.shape[2] for a in arrays)))
        batch = np.zeros((len(arrays), 3, height, width), dtype=np.float32)
        mask = np.ones((len(arrays), height, width), dtype=bool)
        for i, a in enumerate(arrays):
            batch[i, :, : a.shape[1], : a.shape[2]] = a
            mask[i, : a.shape[1], : a.shape[2]] = False
        feed = {"images": batch, "pixel_mask": mask}
        return {k: feed[k] for k in self.meta["inputs"]}

    def _canvas(self, hw: tuple[int, int]) -> tuple[int, int]:
        """The padded size of an image of ``hw``: rounded up to the export's ``canvas_multiple``; a graph without
        ``pixel_mask`` reads padding as content, so its images are never padded (equal sizes batched alone)."""
        return canvas(hw, int(self.meta.get("canvas_multiple", 1)) if "pixel_mask" in self.meta["inputs"] else 1)

    def run(self, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Raw ``logits [B, Q, C]``, ``boxes [B, Q, 4]`` normalised cxcywh and, for an instance-segmentation
        model, ``masks [B, Q, H/4, W/4]`` logits (else None)."""
        out = self.session.run(self.outputs, feed)
        return out[0], out[1], out[2] if len(out) > 2 else None

    def postprocess(self, logits: np.ndarray, boxes: np.ndarray, sizes: Sequence[tuple[int, int]],
                    threshold: float, masks: np.ndarray | None = None) -> list[dict[str, Any]]:
        """``PostProcessor`` + the threshold of ``api.predict``; sizes: original ``(w, h)`` per image; masks:
        the mask logits of :meth:`run` (the images' padded input sizes follow from the resize rule)."""
        num_classes = logits.shape[-1]
        k = min(int(self.meta["postprocess_topk"]), logits.shape[1] * num_classes)
        results = []
        for i, (lg, bx, (w, h)) in enumerate(zip(logits, boxes, sizes)):
            scores = _sigmoid(lg).reshape(-1)
            top = np.argsort(-scores, kind="stable")[:k]
            top_scores, query, labels = scores[top], top // num_classes, top % num_classes
            cx, cy, bw, bh = bx[query].astype(np.float32).T
            xyxy = np.stack((cx - 0.5 * bw, cy - 0.5 * bh, cx + 0.5 * bw, cy + 0.5 * bh), -1)
            xyxy = xyxy * np.asarray([w, h, w, h], dtype=np.float32)
            inst = None
            if masks is not None:  # before NMS and the threshold, which read the mask-weighted scores
                input_hw = resized_hw((w, h), self.meta["test_size"], self.meta["test_max_size"])
                inst, mask_scores = instance_masks(masks[i][query], input_hw, (h, w))
                top_scores = top_scores * mask_scores
            if self.meta.get("nms_iou"):  # null (or 0.0 in older files): no NMS
                kept = class_aware_nms(xyxy, top_scores, labels, float(self.meta["nms_iou"]))
                xyxy, top_scores, labels = xyxy[kept], top_scores[kept], labels[kept]
                inst = None if inst is None else inst[kept]
            keep = top_scores > threshold
            xyxy, top_scores, labels = xyxy[keep], top_scores[keep], labels[keep]
            xyxy[:, 0::2] = xyxy[:, 0::2].clip(0, w)
            xyxy[:, 1::2] = xyxy[:, 1::2].clip(0, h)
            result = {
                "scores": top_scores,
                "labels": np.asarray([self.category_ids[int(l)] for l in labels], dtype=np.int64),
                "boxes": xyxy,
                "names": [self.names[int(l)] for l in labels],
            }
            if inst is not None:
                result["masks"] = inst[keep]
            results.append(result)
        return results

    def predict(self, images: Any, threshold: float = 0.3, batch_size: int = 4) -> list[dict[str, Any]]:
        """Detections per image (paths, PIL images or arrays, read by ``io.decode.as_rgb``), as ``Detector.predict``."""
        items = list(images) if isinstance(images, (list, tuple)) else [images]
        pils = [as_rgb(i) for i in items]
        groups: dict[tuple[int, int], list[int]] = {}  # batches of one canvas, results in the order given
        for i, im in enumerate(pils):
            hw = resized_hw(im.size, self.meta["test_size"], self.meta["test_max_size"])
            groups.setdefault(self._canvas(hw), []).append(i)
        results: list[Any] = [None] * len(pils)
        for group in groups.values():
            for start in range(0, len(group), batch_size):
                chunk = group[start : start + batch_size]
                logits, boxes, masks = self.run(self.preprocess([pils[i] for i in chunk]))
                dets = self.postprocess(logits, boxes, [pils[i].size for i in chunk], threshold, masks)
                for i, det in zip(chunk, dets):
                    results[i] = det
        return results


def predict_command(model: str, images: Sequence[str], out: str, threshold: float, coco_json: str | None = None,
                    coco_gt: str | None = None, every: int = 1, into_dataset: bool = False) -> str:
    """``matchdetr predict --model model.onnx ...``; returns the summary line."""
    from .predict_io import plan_predict, run_predict, summary_line

    # before loading the model (predict_io.plan_predict): never over an input nor into a dataset split
    plan = plan_predict(images, out, coco_json, coco_gt, into_dataset)
    detector = OnnxDetector(model)
    summary = run_predict(lambda imgs: detector.predict(imgs, threshold=threshold), images, out, load_rgb,
                          threshold=threshold, coco_json=coco_json, coco_gt=coco_gt, every=every, plan=plan)
    return summary_line(summary, threshold)
