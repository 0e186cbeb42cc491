"""Stable matching presets (Stable-DINO, Liu et al. 2023): each is its baseline preset plus the stable
components (position-supervised loss, position-modulated cost, dense memory fusion, test-time NMS at 0.8),
applied by one function to any Hungarian-matched DETR (paper sec 4.3)."""

from __future__ import annotations

from ..config import Config
from ..losses.position_supervised import PositionSupervisedLossConfig
from ..matching.costs import PositionModulatedCostConfig
from ..models.plugins.memory_fusion import DenseFusionConfig
from . import detr_family as base
from . import sam_detr
from .registry import preset


def stable(cfg: Config, fusion: bool = True, nms: bool = True) -> Config:
    """Add stable matching to a config in place (the paper's defaults, as the release sets them):

    - position-supervised loss, ``f1 = s^2``, rescale ``one`` (the release), class weight 6.0 (paper table 8)
      with L1 5.0 and GIoU 2.0; denoising positives use it too, at class weight 1.0 (the release);
    - position-modulated cost ``f2 = x^0.5``, class cost weight 2.0 (table 9);
    - dense memory fusion (table 6) and class-aware NMS at IoU 0.8 at test time (each can be left out).
    """
    m = cfg.model
    m.loss.class_loss, m.loss.dn_class_loss = PositionSupervisedLossConfig(f1="s^2", rescale="one"), None
    m.loss.class_weight, m.loss.bbox_weight, m.loss.giou_weight, m.loss.dn_class_weight = 6.0, 5.0, 2.0, 1.0
    m.matcher.class_cost = PositionModulatedCostConfig(power=0.5)
    m.matcher.cost_class, m.matcher.cost_bbox, m.matcher.cost_giou = 2.0, 5.0, 2.0
    if fusion:
        m.memory_fusion = DenseFusionConfig()
    if nms:
        m.postprocess.nms_iou = 0.8
    return cfg


# (stable preset, its baseline) for the full-size and the tiny forms
_PAIRS = {
    "stable-dino-4scale-r50": base.dino_4scale_r50,
    "stable-dino-5scale-r50": base.dino_5scale_r50,
    "stable-deformable-detr-r50": base.deformable_detr_r50,
    "stable-dab-deformable-detr-r50": base.dab_deformable_detr_r50,
    "stable-h-deformable-detr-r50": base.h_deformable_detr_r50,
    "stable-dino-tiny": base.dino_tiny,
    "stable-dino-5scale-tiny": base.dino_5scale_tiny,
    "stable-deformable-detr-tiny": base.deformable_detr_tiny,
    "stable-dab-deformable-detr-tiny": base.dab_deformable_detr_tiny,
    "stable-h-deformable-detr-tiny": base.h_deformable_detr_tiny,
}

for _name, _baseline in _PAIRS.items():
    preset(_name)(lambda baseline=_baseline: stable(baseline()))


# Both papers in one model: SAM-DETR++ matched and supervised the stable way. Only the loss and the
# cost are added: the matching ideas, without changing SAM-DETR++'s encoder or its evaluation.
@preset("stable-sam-detr-plus-plus-r50")
def stable_sam_detr_plus_plus_r50() -> Config:
    return stable(sam_detr.sam_detr_plus_plus_r50(), fusion=False, nms=False)


@preset("stable-sam-detr-plus-plus-tiny")
def stable_sam_detr_plus_plus_tiny() -> Config:
    return stable(sam_detr._sam_tiny(sam_detr.sam_detr_plus_plus_r50()), fusion=False, nms=False)
