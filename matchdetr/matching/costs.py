"""Matching costs: small composable pieces summed by the Hungarian matcher.

Each cost maps one image's predictions and ground truth to a ``[Q, N]`` matrix (lower is a better match).
A different classification cost (the stable-matching position-modulated cost) is one more class here,
listed in a preset, never a matcher subclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..boxes import cxcywh_to_xyxy, generalized_box_iou
from ..fields import Component, knob


@dataclass
class MatchInputs:
    """One image. logits ``[Q, C]``, boxes ``[Q, 4]`` (cxcywh), labels ``[N]``, gt_boxes ``[N, 4]`` (cxcywh).

    masks: ``[Q, H/4, W/4]`` mask logits over the padded batch, gt_masks: ``[N, h, w]`` bool at the unpadded image
    size; both None for box detection. samples: what the mask costs of this image share (``mask_costs.py``: one
    draw of points for all of them), filled on first use.
    """

    logits: Tensor
    boxes: Tensor
    labels: Tensor
    gt_boxes: Tensor
    masks: Tensor | None = None
    gt_masks: Tensor | None = None
    samples: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict, init=False, repr=False, compare=False)


class FocalClassCost:
    """Focal-style class cost (Deformable-DETR): the focal loss of classifying query i as GT j's class
    positively minus that of classifying it negatively, ``alpha (1-p)^g (-log p) - (1-alpha) p^g (-log(1-p))``.
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, eps: float = 1e-8) -> None:
        self.alpha, self.gamma, self.eps = alpha, gamma, eps

    def __call__(self, x: MatchInputs) -> Tensor:
        return focal_cost(x.logits.sigmoid()[:, x.labels], self.alpha, self.gamma, self.eps)


def focal_cost(p: Tensor, alpha: float, gamma: float, eps: float) -> Tensor:
    """The focal matching cost at probability ``p`` (any shape; Stable-DINO eq. 2 with alpha weighting)."""
    pos = alpha * (1 - p) ** gamma * -(p + eps).log()
    neg = (1 - alpha) * p**gamma * -(1 - p + eps).log()
    return pos - neg


class PositionModulatedCost:
    """Position-modulated class cost (Stable-DINO sec 2.3, eq. 4): the focal cost evaluated at
    ``p~ = p * f2(s'_norm)`` with ``f2(x) = x^power``.

    ``s' = (GIoU + 1) / 2`` of each (query, GT) pair, divided by the image's largest ``s'`` so the best pair
    has 1 (the release's normalisation). Computed per pair, so two GTs of one class get their own columns
    (the release scatters one GIoU column per class instead). Deliberately not eq. 3 as a cost: low-IoU,
    low-score pairs would then look cheap and matching degenerates (sec 2.3).
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, power: float = 0.5, eps: float = 1e-8) -> None:
        self.alpha, self.gamma, self.power, self.eps = alpha, gamma, power, eps

    def __call__(self, x: MatchInputs) -> Tensor:
        p = x.logits.sigmoid()[:, x.labels]
        s = (generalized_box_iou(cxcywh_to_xyxy(x.boxes), cxcywh_to_xyxy(x.gt_boxes)) + 1) / 2
        s = s / s.max().clamp_min(self.eps)
        return focal_cost(p * s.pow(self.power), self.alpha, self.gamma, self.eps)


class L1BoxCost:
    """L1 distance between cxcywh boxes."""

    def __call__(self, x: MatchInputs) -> Tensor:
        return torch.cdist(x.boxes, x.gt_boxes, p=1)


class GIoUCost:
    """Negative generalised IoU (Rezatofighi et al. 2019)."""

    def __call__(self, x: MatchInputs) -> Tensor:
        return -generalized_box_iou(cxcywh_to_xyxy(x.boxes), cxcywh_to_xyxy(x.gt_boxes))


@dataclass
class FocalCostConfig(Component):
    """The focal class cost of Deformable-DETR and DINO."""

    kind = "focal"
    alpha: float = knob(0.25, ge=0, le=1)  # focal alpha of the cost
    gamma: float = knob(2.0, ge=0)  # focal gamma of the cost

    def build(self) -> FocalClassCost:
        return FocalClassCost(self.alpha, self.gamma)


@dataclass
class PositionModulatedCostConfig(Component):
    """Stable matching's position-modulated class cost (Stable-DINO eq. 4)."""

    kind = "position_modulated"
    alpha: float = knob(0.25, ge=0, le=1)  # focal alpha of the cost
    gamma: float = knob(2.0, ge=0)  # focal gamma of the cost
    power: float = knob(0.5, ge=0)  # f2(x) = x^power; paper table 9: 0 (f2 = 1), 0.25, 0.5 (default), 1, 2

    def build(self) -> PositionModulatedCost:
        return PositionModulatedCost(self.alpha, self.gamma, self.power)
