"""The matcher and the criterion of a model config: each class cost, class loss and mask term builds itself
from its own config; this module adds the box terms and the weights."""

from __future__ import annotations

from ..engine.distributed import all_reduce_sum
from ..losses.boxes import BoxLoss
from ..losses.criterion import SetCriterion
from ..matching.costs import GIoUCost, L1BoxCost
from ..matching.hungarian import HungarianMatcher
from .model_config import ModelConfig


def build_matcher(cfg: ModelConfig) -> HungarianMatcher:
    """Hungarian matching on class + L1 + GIoU costs (DETR eq. 1, with Deformable-DETR's focal class cost); the class cost is the
    focal cost or stable matching's position-modulated cost (Stable-DINO eq. 4); Mask-DINO's mask BCE and dice
    costs when ``model.matcher.mask_cost`` is set (a zero weight is not even built, so a box model's matcher
    is the one it always had)."""
    m = cfg.matcher
    costs = [(m.cost_class, m.class_cost.build()), (m.cost_bbox, L1BoxCost()), (m.cost_giou, GIoUCost())]
    if m.mask_cost is not None:
        costs += m.mask_cost.build()
    return HungarianMatcher(costs)


def build_criterion(cfg: ModelConfig) -> SetCriterion:
    """Class loss (focal, stable matching's position-supervised loss, eq. 3, or another member of the
    IoU-aware family) + L1/GIoU box loss (+ the point-sampled mask loss when ``model.loss.mask`` is set)."""
    l = cfg.loss
    class_loss = l.class_loss.build()
    dn_class_loss = class_loss if l.dn_class_loss is None else l.dn_class_loss.build()
    weights = {"class": l.class_weight, "bbox": l.bbox_weight, "giou": l.giou_weight}
    mask_loss = None
    if l.mask is not None:
        mask_loss = l.mask.build()
        weights.update(mask=l.mask.mask_weight, dice=l.mask.dice_weight)
    return SetCriterion(
        build_matcher(cfg),
        class_loss,
        BoxLoss(),
        weights=weights,
        aux_loss=l.aux_loss,
        dn_class_loss=dn_class_loss,
        dn_weights=None if l.dn_class_weight is None else {"class": l.dn_class_weight},
        reduce=all_reduce_sum,
        mask_loss=mask_loss,
    )
