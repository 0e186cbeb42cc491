"""Non-maximum suppression in pure PyTorch (no torchvision), greedy and class-aware.

Stable-DINO evaluates with class-aware NMS at IoU 0.8 after the top-k selection (paper table 6, "+ NMS"),
which removes the near-duplicates a set predictor still makes early in training.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..boxes import box_iou


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS: indices ``[K]`` (int64, by decreasing score) of the boxes kept.

    boxes: ``[N, 4]`` xyxy; scores: ``[N]``. A box is dropped when its IoU with a higher-scoring KEPT box is
    strictly above ``iou_threshold`` (torchvision's rule). Ties in score keep the lower index first.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    over = box_iou(boxes[order].float(), boxes[order].float()) > iou_threshold
    n = order.numel()
    keep = torch.ones(n, dtype=torch.bool, device=boxes.device)
    # One pass in score order on the host: N is the post-top-k count (<= a few hundred), so the loop costs
    # less than syncing the device per row would.
    over_host, keep_host = over.cpu(), keep.cpu()
    for i in range(n):
        if keep_host[i]:
            keep_host[i + 1 :] &= ~over_host[i, i + 1 :]
    return order[keep_host.to(order.device)]


def batched_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """Class-aware NMS: boxes of different labels never suppress each other. Same returns as :func:`nms`.

    Each class's boxes are shifted by ``label * (max coordinate + 1)`` so classes cannot overlap, then one
    greedy pass runs over all of them.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    offset = labels.to(boxes.dtype)[:, None] * (boxes.max() - boxes.min() + 1)
    return nms(boxes + offset, scores, iou_threshold)


def nms_reference(boxes: Tensor, scores: Tensor, iou_threshold: float) -> list[int]:
    """Naive transcription of greedy NMS for the tests: repeatedly take the best remaining box and drop
    every remaining box that overlaps it by more than the threshold."""
    remaining = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    kept = []
    while remaining:
        best = remaining.pop(0)
        kept.append(best)
        remaining = [j for j in remaining if float(box_iou(boxes[best : best + 1], boxes[j : j + 1])[0, 0]) <= iou_threshold]
    return kept
