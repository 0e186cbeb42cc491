"""The model section of the config: which architecture, and one typed config per swappable component, each
slot a tagged union over the table of its kind below (``matchdetr.fields``). Adding a kind of component is its
file (the component and its config dataclass, with ``kind`` and ``build``), its test and one line in its table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import Kinds, knob, one_of
from ..losses.focal import FocalLossConfig
from ..losses.iou_aware import (IaBceLossConfig, MatchabilityAwareLossConfig, QualityFocalLossConfig,
                                VarifocalLossConfig)
from ..losses.masks import PointSampledMaskLossConfig
from ..losses.position_supervised import PositionSupervisedLossConfig
from ..matching.costs import FocalCostConfig, PositionModulatedCostConfig
from ..matching.mask_costs import MaskCostConfig
from ..models.backbone import ResNetConfig
from ..models.efficientnet_lite import EfficientNetLiteConfig
from ..models.swin import SwinConfig
from ..models.plugins.denoising import DinoDenoisingConfig, DnDetrDenoisingConfig, MaskDinoDenoisingConfig
from ..models.plugins.hybrid_matching import OneToManyConfig
from ..models.plugins.memory_fusion import DenseFusionConfig, SimpleFusionConfig, ULikeFusionConfig
from .archs import (DabDeformableDetrArch, DeformableDetrArch, DetrArch, DinoArch, MaskDinoArch, SamDetrArch,
                    SmcaDetrArch)

# ---------------------------------------------------------------------------------------- one table per kind
ARCHS = Kinds("architecture", [DetrArch, SmcaDetrArch, DeformableDetrArch, DabDeformableDetrArch, DinoArch,
                               MaskDinoArch, SamDetrArch])
BACKBONES = Kinds("backbone", [ResNetConfig, EfficientNetLiteConfig, SwinConfig])
CLASS_LOSSES = Kinds("class loss", [FocalLossConfig, PositionSupervisedLossConfig, VarifocalLossConfig,
                                    QualityFocalLossConfig, IaBceLossConfig, MatchabilityAwareLossConfig])
MASK_LOSSES = Kinds("mask loss", [PointSampledMaskLossConfig])
CLASS_COSTS = Kinds("class cost", [FocalCostConfig, PositionModulatedCostConfig])
MASK_COSTS = Kinds("mask cost", [MaskCostConfig])
DENOISING = Kinds("denoising", [DnDetrDenoisingConfig, DinoDenoisingConfig, MaskDinoDenoisingConfig])
HYBRID = Kinds("one-to-many branch", [OneToManyConfig])
FUSIONS = Kinds("memory fusion", [DenseFusionConfig, SimpleFusionConfig, ULikeFusionConfig])

Arch = DetrArch | SmcaDetrArch | DeformableDetrArch | DabDeformableDetrArch | DinoArch | MaskDinoArch | SamDetrArch
Backbone = ResNetConfig | EfficientNetLiteConfig | SwinConfig
ClassLoss = (FocalLossConfig | PositionSupervisedLossConfig | VarifocalLossConfig | QualityFocalLossConfig
             | IaBceLossConfig | MatchabilityAwareLossConfig)
ClassCost = FocalCostConfig | PositionModulatedCostConfig
Denoising = DnDetrDenoisingConfig | DinoDenoisingConfig | MaskDinoDenoisingConfig
Fusion = DenseFusionConfig | SimpleFusionConfig | ULikeFusionConfig


# ------------------------------------------------------------------------------------------------ sections
@dataclass
class TransformerConfig:
    hidden_dim: int = knob(256, ge=1)  # d, the width of every token and query
    num_heads: int = knob(8, ge=1)  # attention heads (hidden_dim must be divisible by it)
    enc_layers: int = knob(6, ge=0)  # encoder layers
    dec_layers: int = knob(6, ge=1)  # decoder layers
    dim_feedforward: int = knob(2048, ge=1)  # the decoder's (and a single-scale encoder's) FFN width
    dropout: float = knob(0.1, ge=0, lt=1)  # dropout in attention and FFN
    pre_norm: bool = False  # LayerNorm before each sub-layer; DETR uses post-norm
    num_queries: int = knob(300, ge=1)  # object queries (DETR-dagger of SAM-DETR++ table 1 uses 300)
    # Deformable attention (Deformable-DETR): feature levels (backbone levels + extra stride-2 convs) and sampling
    # points per level and head, in the encoder and in the decoder's cross-attention.
    num_levels: int = knob(4, ge=1)
    enc_points: int = knob(4, ge=1)  # sampling points per level and head in the encoder
    dec_points: int = knob(4, ge=1)  # sampling points per level and head in the decoder


@dataclass
class MatcherConfig:
    # C = cost_class * class cost + cost_bbox * L1(cxcywh) + cost_giou * (-GIoU) (+ the mask costs), Hungarian
    class_cost: ClassCost = one_of(CLASS_COSTS, FocalCostConfig)  # focal | position_modulated (Stable-DINO eq. 4)
    cost_class: float = knob(2.0, ge=0)  # weight of the class cost
    cost_bbox: float = knob(5.0, ge=0)  # weight of the L1 box cost
    cost_giou: float = knob(2.0, ge=0)  # weight of the -GIoU cost
    mask_cost: MaskCostConfig | None = one_of(MASK_COSTS, None)  # Mask-DINO's mask costs; None: boxes only


@dataclass
class LossConfig:
    # focal | position_supervised (Stable-DINO eq. 3) | varifocal | quality_focal | ia_bce | matchability_aware
    class_loss: ClassLoss = one_of(CLASS_LOSSES, FocalLossConfig)
    # the class loss of the denoising sets; None: class_loss (Stable-DINO's release: the position-supervised loss too)
    dn_class_loss: ClassLoss | None = one_of(CLASS_LOSSES, None)
    class_weight: float = knob(2.0, ge=0)  # weight of the class loss
    bbox_weight: float = knob(5.0, ge=0)  # weight of the L1 box loss
    giou_weight: float = knob(2.0, ge=0)  # weight of the GIoU loss
    dn_class_weight: float | None = knob(None, ge=0)  # class weight of the denoising sets; None: class_weight
    aux_loss: bool = True  # supervise every decoder layer, each re-matched
    # Mask-DINO's point-sampled mask BCE + dice on every supervised set; None: no mask loss (box detection)
    mask: PointSampledMaskLossConfig | None = one_of(MASK_LOSSES, None)


@dataclass
class PostprocessConfig:
    topk: int = knob(100, ge=1)  # top-k over (queries x classes): 100 for 300 queries, 300 for 900
    nms_iou: float | None = knob(None, gt=0, le=1)  # class-aware NMS at this IoU after the top-k; None: no NMS


@dataclass
class ModelConfig:
    arch: Arch = one_of(ARCHS, DetrArch)  # which composition (compose/detectors.py), with its own knobs
    num_classes: int = knob(91, ge=1)  # classes the heads predict (training sets it from the dataset)
    backbone: Backbone = one_of(BACKBONES, ResNetConfig)  # resnet | efficientnet_lite | swin
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    # training-only denoising queries: dn_detr | dino | mask_dino; None: off
    denoising: Denoising | None = one_of(DENOISING, None)
    hybrid: OneToManyConfig | None = one_of(HYBRID, None)  # H-DETR's one-to-many branch; None: off
    memory_fusion: Fusion | None = one_of(FUSIONS, None)  # Stable-DINO sec 3: dense | simple | u_like; None: off
    matcher: MatcherConfig = field(default_factory=MatcherConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
