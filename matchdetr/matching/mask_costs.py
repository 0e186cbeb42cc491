"""Mask matching costs: the mask terms Mask-DINO's "hybrid matching" adds to DINO's class and box costs (the
release's ``HungarianMatcher.memory_efficient_forward``, after Mask2Former's matcher).

Both costs compare every query's mask with every GT mask at the same ``P`` uniform random points of the padded
batch frame (Mask2Former matches on points, not full masks, to save memory): predicted logits are sampled from
the stride-4 map, GT masks as if zero-padded bottom/right to ``MASK_STRIDE`` times that map, as the release pads
its targets to the padded batch image. The points are drawn once per image (``torch.rand`` on the global
generator, the release's ``point_coords`` shared by both costs) and kept on the image's :class:`MatchInputs`, so
the BCE and dice costs of one image see the same draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..fields import Component, knob
from ..ops.point_sample import point_sample, point_sample_on_canvas
from ..structures import MASK_STRIDE
from .costs import MatchInputs

# Mask-DINO's COCO config (MODEL.MaskDINO.TRAIN_NUM_POINTS): 112 * 112 points, for the matcher and the loss.
DEFAULT_POINTS = 112 * 112


def sampled_masks(x: MatchInputs, num_points: int) -> tuple[Tensor, Tensor]:
    """Predicted logits ``[Q, P]`` and GT masks ``[N, P]`` (float in [0, 1]) at one uniform draw of ``P`` points.

    Drawn on the first call for ``(x, num_points)`` and reused by later calls (every mask cost of the image).
    Raises ValueError when ``x`` has no masks.
    """
    if x.masks is None or x.gt_masks is None:
        raise ValueError("a mask matching cost needs mask logits (Prediction.masks) and GT masks (Target.masks)")
    if num_points < 1:
        raise ValueError(f"a mask matching cost needs num_points >= 1, got {num_points}")
    if num_points not in x.samples:
        masks, dtype = x.masks, torch.promote_types(x.masks.dtype, torch.float32)
        coords = torch.rand(1, num_points, 2, device=masks.device, dtype=dtype)
        canvas = (MASK_STRIDE * masks.shape[-2], MASK_STRIDE * masks.shape[-1])
        # queries as channels of one map: one grid_sample for all of them, no [Q, P, 2] copy of the points
        pred = point_sample(masks.to(coords.dtype)[None], coords)[0]
        x.samples[num_points] = (pred, point_sample_on_canvas(x.gt_masks.to(masks.device), coords, canvas))
    return x.samples[num_points]


def pairwise_sigmoid_ce(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean over points of the sigmoid BCE of every (query, GT) pair (Mask2Former's ``batch_sigmoid_ce_loss``).

    logits ``[Q, P]``, targets ``[N, P]``; returns ``[Q, N]``: ``(pos @ t^T + neg @ (1 - t)^T) / P`` with
    ``pos = BCE(x, 1) = softplus(-x)``, ``neg = BCE(x, 0) = softplus(x)``: the BCE is linear in the target, so the
    ``Q x N x P`` pair tensor is never formed.
    """
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    return (pos @ targets.T + neg @ (1 - targets).T) / logits.shape[1]


def pairwise_dice(logits: Tensor, targets: Tensor) -> Tensor:
    """Dice cost of every (query, GT) pair (Mask2Former's ``batch_dice_loss``), +1 smoothing on both sides.

    logits ``[Q, P]``, targets ``[N, P]``; returns ``[Q, N]``: ``1 - (2 p t^T + 1) / (sum p + sum t + 1)``,
    ``p = sigmoid(logits)``.
    """
    p = logits.sigmoid()
    return 1 - (2 * p @ targets.T + 1) / (p.sum(-1)[:, None] + targets.sum(-1)[None, :] + 1)


class MaskBCECost:
    """Pairwise point-sampled sigmoid BCE (the release's ``cost_mask``; weight 5.0 in Mask-DINO's COCO config)."""

    def __init__(self, num_points: int = DEFAULT_POINTS) -> None:
        self.num_points = num_points

    def __call__(self, x: MatchInputs) -> Tensor:
        return pairwise_sigmoid_ce(*sampled_masks(x, self.num_points))


class DiceCost:
    """Pairwise point-sampled dice cost (the release's ``cost_dice``; weight 5.0 in Mask-DINO's COCO config)."""

    def __init__(self, num_points: int = DEFAULT_POINTS) -> None:
        self.num_points = num_points

    def __call__(self, x: MatchInputs) -> Tensor:
        return pairwise_dice(*sampled_masks(x, self.num_points))


@dataclass
class MaskCostConfig(Component):
    """The mask terms of Mask-DINO's hybrid matching, on one draw of uniform points per image (the release's COCO
    config: 5.0 and 5.0 on 112 * 112 points). A weight of 0 leaves its cost out."""

    kind = "point_sampled"
    mask_weight: float = knob(5.0, ge=0)  # weight of the pairwise point-sampled sigmoid BCE (cost_mask)
    dice_weight: float = knob(5.0, ge=0)  # weight of the pairwise dice cost (cost_dice)
    points: int = knob(DEFAULT_POINTS, ge=1)  # uniform points per image shared by both costs

    def build(self) -> list[tuple[float, MaskBCECost | DiceCost]]:
        """The (weight, cost) pairs the matcher adds; a zero weight is not built."""
        costs: list[tuple[float, MaskBCECost | DiceCost]] = []
        if self.mask_weight:
            costs.append((self.mask_weight, MaskBCECost(self.points)))
        if self.dice_weight:
            costs.append((self.dice_weight, DiceCost(self.points)))
        return costs
