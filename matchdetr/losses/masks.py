"""Mask losses on matched pairs: point-sampled sigmoid BCE and dice (Mask-DINO's mask loss, the release's
``SetCriterion.loss_masks`` after Mask2Former's; points chosen by PointRend's importance sampling).

For the ``K`` matched (query, GT) pairs of a batch, the loss is computed at ``P`` points per pair instead of every
pixel (Mask2Former sec 3.3: same accuracy, a third of the memory): ``int(beta P)`` points where the predicted mask
is most uncertain among ``int(k P)`` uniform candidates, plus uniform points (``ops/uncertain_points.py``). The
predicted logits are sampled from the stride-4 map, the GT masks as if zero-padded bottom/right to
``MASK_STRIDE`` times that map (the release pads targets to the padded batch image; ours is padded bottom/right
too), so a normalised point means the same place in both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..fields import Component, knob
from ..matching.mask_costs import DEFAULT_POINTS
from ..ops.point_sample import point_sample, point_sample_on_canvas
from ..ops.uncertain_points import point_budget, uncertain_point_coords
from ..structures import MASK_STRIDE, Prediction, Target


def sigmoid_ce_loss(logits: Tensor, targets: Tensor, num_boxes: float) -> Tensor:
    """Sigmoid BCE averaged over each mask's points, summed over masks, over ``num_boxes`` (Mask2Former's
    ``sigmoid_ce_loss``). logits, targets: ``[K, P]``; returns a scalar."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(1).sum() / num_boxes


def dice_loss(logits: Tensor, targets: Tensor, num_boxes: float) -> Tensor:
    """``1 - (2 sum p t + 1) / (sum p + sum t + 1)`` per mask (``p = sigmoid``, sums over points, +1 smoothing),
    summed over masks, over ``num_boxes`` (Mask2Former's ``dice_loss``). logits, targets: ``[K, P]``."""
    p = logits.sigmoid()
    dice = 1 - (2 * (p * targets).sum(-1) + 1) / (p.sum(-1) + targets.sum(-1) + 1)
    return dice.sum() / num_boxes


class MaskLoss:
    """Returns ``{"mask": sigmoid BCE, "dice": dice}`` of the matched masks, both summed over ``num_boxes``.

    num_points ``P``, oversample_ratio ``k`` and importance_sample_ratio ``beta``: Mask-DINO's COCO config uses
    112 * 112, 3.0 and 0.75 (MODEL.MaskDINO.TRAIN_NUM_POINTS / OVERSAMPLE_RATIO / IMPORTANCE_SAMPLE_RATIO).
    """

    def __init__(self, num_points: int = DEFAULT_POINTS, oversample_ratio: float = 3.0,
                 importance_sample_ratio: float = 0.75) -> None:
        point_budget(num_points, oversample_ratio, importance_sample_ratio)  # reject bad ratios at build time
        self.num_points, self.oversample_ratio = num_points, oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio

    def choose_points(self, logits: Tensor) -> Tensor:
        """``[K, 1, H, W]`` matched mask logits -> ``[K, P, 2]`` points (no gradient through the choice)."""
        return uncertain_point_coords(logits.detach(), self.num_points, self.oversample_ratio,
                                      self.importance_sample_ratio)

    def __call__(
        self,
        pred: Prediction,
        targets: list[Target],
        indices: list[tuple[Tensor, Tensor]],
        num_boxes: float,
    ) -> dict[str, Tensor]:
        """pred.masks ``[B, Q, H/4, W/4]`` logits; targets' masks ``[N_b, h_b, w_b]`` bool; indices per image
        ``(query_idx [K_b], gt_idx [K_b])``."""
        if pred.masks is None:
            raise ValueError("the mask loss needs mask logits (Prediction.masks) in every supervised prediction set")
        # AMP's half-precision logits are scored in float32; float64 stays float64 (the gradient checks)
        src = pred.masks.to(torch.promote_types(pred.masks.dtype, torch.float32))
        if sum(int(qi.numel()) for qi, _ in indices) == 0:
            zero = pred.masks.sum() * 0  # keeps the graph, as the box losses' empty sums do
            return {"mask": zero, "dice": zero.clone()}
        matched = torch.cat([src[b, qi] for b, (qi, _) in enumerate(indices)])  # [K, H/4, W/4]
        coords = self.choose_points(matched[:, None])
        canvas = (MASK_STRIDE * src.shape[-2], MASK_STRIDE * src.shape[-1])
        labels, start = [], 0
        for (qi, gi), t in zip(indices, targets):
            if qi.numel() == 0:
                continue
            if t.masks is None:
                raise ValueError("the mask loss needs GT masks (Target.masks); read the dataset with masks")
            # each image's GT masks at its own unpadded size, sampled in the padded frame of the whole batch
            labels.append(point_sample_on_canvas(t.masks[gi], coords[start : start + len(qi)], canvas))
            start += len(qi)
        point_labels = torch.cat(labels).to(src.dtype)  # [K, P]
        point_logits = point_sample(matched[:, None], coords)[:, 0]  # [K, P]
        return {"mask": sigmoid_ce_loss(point_logits, point_labels, num_boxes),
                "dice": dice_loss(point_logits, point_labels, num_boxes)}


@dataclass
class PointSampledMaskLossConfig(Component):
    """Mask-DINO's mask loss: sigmoid BCE and dice at points chosen by PointRend's importance sampling, on every
    supervised prediction set (the release's COCO config: weights 5.0 and 5.0, 112 * 112 points, 3x
    oversampled candidates, 0.75 of the points by uncertainty)."""

    kind = "point_sampled"
    mask_weight: float = knob(5.0, ge=0)  # weight of the point-sampled sigmoid BCE (loss_mask)
    dice_weight: float = knob(5.0, ge=0)  # weight of the dice loss (loss_dice)
    points: int = knob(DEFAULT_POINTS, ge=1)  # points per matched mask (112 * 112 in the release)
    oversample_ratio: float = knob(3.0, ge=1)  # uniform candidates per point, of which the most uncertain are kept
    importance_ratio: float = knob(0.75, ge=0, le=1)  # share of the points chosen by uncertainty (the rest uniform)

    def build(self) -> MaskLoss:
        return MaskLoss(self.points, self.oversample_ratio, self.importance_ratio)
