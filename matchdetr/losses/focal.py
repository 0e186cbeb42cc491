"""Sigmoid focal loss (Lin et al. 2017, eq. 5) and the classification loss built on it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..fields import Component, knob
from ..structures import Prediction, Target


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Element-wise ``alpha_t * (1 - p_t)^gamma * BCE(p, t)``, from logits so saturated logits stay finite.

    logits, targets: same shape; targets in [0, 1]. alpha < 0 disables the alpha weighting.
    """
    logits = logits.float()
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def one_hot_targets(logits: Tensor, targets: list[Target], indices: list[tuple[Tensor, Tensor]]) -> Tensor:
    """``[B, Q, C]`` float with 1 at (query, class of its matched GT) and 0 elsewhere (background)."""
    onehot = torch.zeros_like(logits, dtype=torch.float32)
    for b, ((qi, gi), tgt) in enumerate(zip(indices, targets)):
        if qi.numel():
            onehot[b, qi, tgt.labels[gi]] = 1.0
    return onehot


class FocalClassLoss:
    """Classification loss of focal-loss DETRs: sigmoid focal loss over every (query, class) entry, matched
    pairs positive at their GT class, everything else negative; summed and divided by the GT count."""

    name = "class"

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0) -> None:
        self.alpha, self.gamma = alpha, gamma

    def __call__(
        self,
        pred: Prediction,
        targets: list[Target],
        indices: list[tuple[Tensor, Tensor]],
        num_boxes: float,
    ) -> Tensor:
        onehot = one_hot_targets(pred.logits, targets, indices)
        return sigmoid_focal_loss(pred.logits, onehot, self.alpha, self.gamma).sum() / num_boxes


@dataclass
class FocalLossConfig(Component):
    """The sigmoid focal loss of Deformable-DETR and DINO (Lin et al. 2017, eq. 5)."""

    kind = "focal"
    alpha: float = knob(0.25, ge=0, le=1)  # weight of the positives, 1 - alpha of the negatives (eq. 5's alpha_t)
    gamma: float = knob(2.0, ge=0)  # focusing exponent: (1 - p_t)^gamma down-weights the easy entries

    def build(self) -> FocalClassLoss:
        return FocalClassLoss(self.alpha, self.gamma)
