"""Matching costs: small composable pieces summed by the Hungarian matcher.

Each cost maps one image's predictions and ground truth to a ``[Q, N]`` matrix (lower is a better match).
A different classification cost (the stable-matching position-modulated cost) is one more class here,
listed in a preset, never a matcher subclass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..boxes import cxcywh_to_xyxy, generalized_box_iou


@dataclass
class MatchInputs:
    """One image. logits ``[Q, C]``, boxes ``[Q, 4]`` (cxcywh), labels ``[N]``, gt_boxes ``[N, 4]`` (cxcywh)."""

    logits: Tensor
    boxes: Tensor
    labels: Tensor
    gt_boxes: Tensor


class FocalClassCost:
    """Focal-style class cost (Deformable-DETR): the focal loss of classifying query i as GT j's class
    positively minus that of classifying it negatively, ``alpha (1-p)^g (-log p) - (1-alpha) p^g (-log(1-p))``.
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, eps: float = 1e-8) -> None:
        self.alpha, self.gamma, self.eps = alpha, gamma, eps

    def __call__(self, x: MatchInputs) -> Tensor:
        p = x.logits.sigmoid()[:, x.labels]
        pos = self.alpha * (1 - p) ** self.gamma * -(p + self.eps).log()
        neg = (1 - self.alpha) * p**self.gamma * -(1 - p + self.eps).log()
        return pos - neg


class L1BoxCost:
    """L1 distance between cxcywh boxes."""

    def __call__(self, x: MatchInputs) -> Tensor:
        return torch.cdist(x.boxes, x.gt_boxes, p=1)


class GIoUCost:
    """Negative generalised IoU (Rezatofighi et al. 2019)."""

    def __call__(self, x: MatchInputs) -> Tensor:
        return -generalized_box_iou(cxcywh_to_xyxy(x.boxes), cxcywh_to_xyxy(x.gt_boxes))
