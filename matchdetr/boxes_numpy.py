"""The numpy twin of ``boxes.box_iou`` for the torch-free paths: the ONNX predictor's NMS and the confusion
matrix (which reads COCO results, not tensors)."""

from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ``[N, 4]`` and ``[M, 4]`` xyxy boxes -> ``[N, M]``; 0 where both boxes are empty."""
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a, area_b = (np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1) for x in (a, b))
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
