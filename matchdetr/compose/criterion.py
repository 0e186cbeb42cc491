"""The matcher and the criterion of a ModelConfig: which class cost, which class loss, which weights, and
whether masks are matched and supervised."""

from __future__ import annotations

from ..config import ModelConfig
from ..engine.distributed import all_reduce_sum
from ..losses.boxes import BoxLoss
from ..losses.criterion import SetCriterion
from ..losses.focal import FocalClassLoss
from ..losses.iou_aware import IOU_AWARE, IoUAwareClassLoss
from ..losses.masks import MaskLoss
from ..losses.position_supervised import PositionSupervisedLoss
from ..matching.costs import FocalClassCost, GIoUCost, L1BoxCost, PositionModulatedCost
from ..matching.hungarian import HungarianMatcher
from ..matching.mask_costs import DiceCost, MaskBCECost

CLASS_LOSSES = ("focal", "position_supervised", *IOU_AWARE)


def build_matcher(cfg: ModelConfig) -> HungarianMatcher:
    """Hungarian matching on class + L1 + GIoU costs (detr-family spec, "Matching"); the class cost is the
    focal cost or stable matching's position-modulated cost (Stable-DINO eq. 4); mask BCE and dice costs when
    ``model.matcher.cost_mask`` / ``cost_dice`` are set."""
    m = cfg.matcher
    class_costs = {
        "focal": lambda: FocalClassCost(m.focal_alpha, m.focal_gamma),
        "position_modulated": lambda: PositionModulatedCost(m.focal_alpha, m.focal_gamma, m.pmc_power),
    }
    if m.class_cost not in class_costs:
        raise ValueError(f"unknown model.matcher.class_cost '{m.class_cost}'; available: {', '.join(class_costs)}")
    costs = [(m.cost_class, class_costs[m.class_cost]()), (m.cost_bbox, L1BoxCost()), (m.cost_giou, GIoUCost())]
    # Mask-DINO's hybrid matching adds mask costs (5.0 and 5.0 there); at weight 0 they are not even built, so a
    # box model's matcher is the one it always had.
    if m.cost_mask:
        costs.append((m.cost_mask, MaskBCECost(m.mask_points)))
    if m.cost_dice:
        costs.append((m.cost_dice, DiceCost(m.mask_points)))
    return HungarianMatcher(costs)


def build_criterion(cfg: ModelConfig) -> SetCriterion:
    """Class loss (focal, stable matching's position-supervised loss, eq. 3, or another member of the
    IoU-aware family, ``losses/iou_aware.py``) + L1/GIoU box loss (+ the point-sampled mask loss when
    ``model.loss.mask_weight`` or ``dice_weight`` is set)."""
    l = cfg.loss
    focal = FocalClassLoss(l.focal_alpha, l.focal_gamma)
    iou_aware = {
        "varifocal": lambda: IoUAwareClassLoss("varifocal", alpha=l.vfl_alpha, gamma=l.vfl_gamma),
        "quality_focal": lambda: IoUAwareClassLoss("quality_focal", beta=l.qfl_beta),
        "ia_bce": lambda: IoUAwareClassLoss("ia_bce", alpha=l.ia_bce_alpha, gamma=l.ia_bce_gamma),
        "matchability_aware": lambda: IoUAwareClassLoss("matchability_aware", gamma=l.mal_gamma,
                                                        alpha=None if l.mal_alpha < 0 else l.mal_alpha),
    }
    if l.class_loss == "focal":
        class_loss = dn_class_loss = focal
    elif l.class_loss == "position_supervised":
        class_loss = PositionSupervisedLoss(l.psl_f1, l.psl_rescale, l.focal_alpha, l.focal_gamma)
        dn_class_loss = class_loss if l.psl_denoising else focal
    elif l.class_loss in iou_aware:
        class_loss = dn_class_loss = iou_aware[l.class_loss]()  # DN queries too, as RT-DETR trains them with VFL
    else:
        raise ValueError(f"unknown model.loss.class_loss '{l.class_loss}'; available: "
                         f"{', '.join(CLASS_LOSSES)}")
    dn_weights = {"class": l.dn_class_weight} if l.dn_class_weight >= 0 else None
    weights = {"class": l.class_weight, "bbox": l.bbox_weight, "giou": l.giou_weight}
    # Mask-DINO's mask loss (weights 5.0 and 5.0 there) only when asked for: box presets keep their loss terms.
    mask_loss = None
    if l.mask_weight or l.dice_weight:
        mask_loss = MaskLoss(l.mask_points, l.mask_oversample_ratio, l.mask_importance_ratio)
        weights.update(mask=l.mask_weight, dice=l.dice_weight)
    return SetCriterion(
        build_matcher(cfg),
        class_loss,
        BoxLoss(),
        weights=weights,
        aux_loss=l.aux_loss,
        dn_class_loss=dn_class_loss,
        dn_weights=dn_weights,
        reduce=all_reduce_sum,
        mask_loss=mask_loss,
    )
