"""Assemble a Detector and its criterion from a ModelConfig.

This is the only place that reads config objects; every part below it takes plain typed arguments. Each
architecture is a small function that picks the parts; new architectures add one function to ``_ARCHS``.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..config import ModelConfig
from ..losses.boxes import BoxLoss
from ..losses.criterion import SetCriterion
from ..losses.focal import FocalClassLoss
from ..losses.iou_aware import IOU_AWARE, IoUAwareClassLoss
from ..losses.position_supervised import PositionSupervisedLoss
from ..matching.costs import FocalClassCost, GIoUCost, L1BoxCost, PositionModulatedCost
from ..matching.hungarian import HungarianMatcher
from .backbone import build_backbone
from .decoders import CrossAttentionDecoderLayer, Decoder
from .detector import Detector
from .encoders import Encoder, SelfAttentionEncoderLayer
from .heads import DetectionHead
from .neck import InputProjection
from .postprocess import PostProcessor
from .anchors import AnchorPosition, AnchorQueries
from .deformable import DeformableDecoderLayer, DeformableEncoderLayer
from .plugins.denoising import DenoisingQueries
from .plugins.hybrid_matching import HybridQueries
from .plugins.memory_fusion import add_memory_fusion
from .plugins.query_selection import MixedQuerySelection, TwoStageQueries
from .queries import LearnedQueries, ReferencePointQueries
from .sam_detr import build_sam_detr, build_smca_detr


def build_detr(cfg: ModelConfig, post: PostProcessor, modulation: nn.Module | None = None) -> Detector:
    """DETR with focal loss and 300 queries (SAM-DETR++ table 1, "DETR-dagger"): single level, global
    self-attention encoder, cross-attention decoder with learned queries, one shared head.

    modulation: a cross-attention bias plug-in (SMCA-DETR's Gaussian); each decoder layer gets its own copy."""
    t = cfg.transformer
    backbone = build_backbone(cfg.backbone)
    enc_layer = SelfAttentionEncoderLayer(t.hidden_dim, t.num_heads, t.dim_feedforward, t.dropout, t.pre_norm)
    dec_layer = CrossAttentionDecoderLayer(t.hidden_dim, t.num_heads, t.dim_feedforward, t.dropout, t.pre_norm,
                                           modulation=modulation)
    return Detector(
        backbone=backbone,
        neck=InputProjection(backbone.channels, t.hidden_dim),
        encoder=Encoder(enc_layer, t.enc_layers),
        queries=LearnedQueries(t.num_queries, t.hidden_dim),
        decoder=Decoder(dec_layer, t.dec_layers, t.hidden_dim),
        head=DetectionHead(t.hidden_dim, cfg.num_classes),
        postprocessor=post,
    )


def _deformable_parts(cfg: ModelConfig) -> tuple[nn.Module, InputProjection, Encoder, DeformableDecoderLayer]:
    """Backbone, multi-scale projection, deformable encoder and decoder layer shared by the deformable family."""
    t = cfg.transformer
    backbone = build_backbone(cfg.backbone)
    extra = t.num_levels - len(backbone.channels)
    if extra < 0:
        raise ValueError(f"model.transformer.num_levels={t.num_levels} is fewer than the backbone's "
                         f"{len(backbone.channels)} return_levels")
    neck = InputProjection(backbone.channels, t.hidden_dim, group_norm=True, extra_levels=extra,
                           level_embed=True, pos_offset=-0.5)
    enc_layer = DeformableEncoderLayer(t.hidden_dim, t.num_heads, t.num_levels, t.enc_points, t.dim_feedforward, t.dropout)
    dec_layer = DeformableDecoderLayer(t.hidden_dim, t.num_heads, t.num_levels, t.dec_points, t.dim_feedforward, t.dropout)
    return backbone, neck, Encoder(enc_layer, t.enc_layers), dec_layer


def _init_box_bias(head: DetectionHead, wh_logit: float) -> None:
    """Deformable-DETR: the first layer's boxes start as the reference point with ``wh = sigmoid(wh_logit)``
    (-2: 0.12). Only the first head: later layers refine a box that already has a size (the release)."""
    nn.init.constant_(head.bbox_embed[0].layers[-1].bias[2:], wh_logit)


def build_deformable_detr(cfg: ModelConfig, post: PostProcessor) -> Detector:
    """Deformable-DETR (Zhu et al. 2021): plain, with iterative box refinement, or two-stage (which implies
    refinement in the published configurations but is independent here)."""
    t = cfg.transformer
    backbone, neck, encoder, dec_layer = _deformable_parts(cfg)
    per_layer = t.box_refine or t.two_stage
    num_heads = (t.dec_layers + int(t.two_stage)) if per_layer else 1
    head = DetectionHead(t.hidden_dim, cfg.num_classes, num_heads=num_heads, zero_box_init=True)
    if not t.two_stage:
        _init_box_bias(head, -2.0)
    if t.two_stage:
        queries: nn.Module = TwoStageQueries(t.hidden_dim, t.num_queries, head, enc_index=t.dec_layers)
        if cfg.hybrid.num_one2many > 0:
            queries = HybridQueries(queries, cfg.hybrid.num_one2many, cfg.hybrid.k, cfg.hybrid.weight)
    elif cfg.hybrid.num_one2many > 0:
        raise ValueError("model.hybrid needs two-stage query selection (model.transformer.two_stage=true)")
    else:
        queries = ReferencePointQueries(t.num_queries, t.hidden_dim)
    decoder = Decoder(dec_layer, t.dec_layers, t.hidden_dim, final_norm=False,
                      box_refine=head.box_delta if t.box_refine else None)
    return Detector(backbone=backbone, neck=neck, encoder=encoder, queries=queries, decoder=decoder, head=head,
                    postprocessor=post)


def _with_denoising(queries: nn.Module, cfg: ModelConfig) -> nn.Module:
    """Wrap a query initialiser with the denoising plug-in when the config asks for it."""
    if cfg.denoising.style == "none":
        return queries
    return DenoisingQueries(queries, cfg.num_classes, cfg.transformer.hidden_dim, cfg.denoising)


def build_dab_deformable_detr(cfg: ModelConfig, post: PostProcessor) -> Detector:
    """DAB-Deformable-DETR: Deformable-DETR with 4-d anchor queries, positional queries from the anchors
    and layer-by-layer anchor refinement (per-layer heads). With denoising it is DN-Deformable-DETR."""
    t = cfg.transformer
    backbone, neck, encoder, dec_layer = _deformable_parts(cfg)
    head = DetectionHead(t.hidden_dim, cfg.num_classes, num_heads=t.dec_layers, zero_box_init=True)
    decoder = Decoder(dec_layer, t.dec_layers, t.hidden_dim, final_norm=False, box_refine=head.box_delta,
                      query_pos=AnchorPosition(t.hidden_dim, scale_by_content=True),
                      look_forward_twice=t.look_forward_twice)
    queries = _with_denoising(AnchorQueries(t.num_queries, t.hidden_dim), cfg)
    return Detector(backbone=backbone, neck=neck, encoder=encoder, queries=queries,
                    decoder=decoder, head=head, postprocessor=post)


def build_dino(cfg: ModelConfig, post: PostProcessor) -> Detector:
    """DINO (Zhang et al. 2023): DAB-style anchors from mixed query selection, contrastive denoising,
    look forward twice; separate class/box heads for the 6 decoder layers and the encoder (7 in all) and a
    final decoder LayerNorm."""
    t = cfg.transformer
    backbone, neck, encoder, dec_layer = _deformable_parts(cfg)
    head = DetectionHead(t.hidden_dim, cfg.num_classes, num_heads=t.dec_layers + 1, zero_box_init=True)
    queries = _with_denoising(MixedQuerySelection(t.hidden_dim, t.num_queries, head, enc_index=t.dec_layers), cfg)
    decoder = Decoder(dec_layer, t.dec_layers, t.hidden_dim, final_norm=True, box_refine=head.box_delta,
                      query_pos=AnchorPosition(t.hidden_dim, scale_by_content=False),
                      look_forward_twice=t.look_forward_twice)
    return Detector(backbone=backbone, neck=neck, encoder=encoder, queries=queries, decoder=decoder, head=head,
                    postprocessor=post)


# Each composition gets the one post-processor build_model makes (top-k, optional NMS) for its Detector.
_ARCHS: dict[str, Callable[[ModelConfig, PostProcessor], Detector]] = {
    "detr": build_detr,
    "deformable_detr": build_deformable_detr,
    "dab_deformable_detr": build_dab_deformable_detr,
    "dino": build_dino,
    "sam_detr": build_sam_detr,  # SAM-DETR / SAM-DETR++ (models/sam_detr.py)
    "smca_detr": build_smca_detr,
}


def build_model(cfg: ModelConfig) -> Detector:
    """The architecture's composition, then the plug-ins every architecture accepts (memory fusion)."""
    if cfg.arch not in _ARCHS:
        raise ValueError(f"unknown model.arch '{cfg.arch}'; available: {', '.join(sorted(_ARCHS))}")
    detector = _ARCHS[cfg.arch](cfg, PostProcessor(cfg.postprocess.topk, cfg.postprocess.nms_iou))
    add_memory_fusion(detector, cfg.memory_fusion, cfg.transformer.hidden_dim)
    return detector


def build_matcher(cfg: ModelConfig) -> HungarianMatcher:
    """Hungarian matching on class + L1 + GIoU costs (detr-family spec, "Matching"); the class cost is the
    focal cost or stable matching's position-modulated cost (Stable-DINO eq. 4)."""
    m = cfg.matcher
    class_costs = {
        "focal": lambda: FocalClassCost(m.focal_alpha, m.focal_gamma),
        "position_modulated": lambda: PositionModulatedCost(m.focal_alpha, m.focal_gamma, m.pmc_power),
    }
    if m.class_cost not in class_costs:
        raise ValueError(f"unknown model.matcher.class_cost '{m.class_cost}'; available: {', '.join(class_costs)}")
    return HungarianMatcher([(m.cost_class, class_costs[m.class_cost]()), (m.cost_bbox, L1BoxCost()),
                             (m.cost_giou, GIoUCost())])


CLASS_LOSSES = ("focal", "position_supervised", *IOU_AWARE)


def build_criterion(cfg: ModelConfig) -> SetCriterion:
    """Class loss (focal, stable matching's position-supervised loss, eq. 3, or another member of the
    IoU-aware family, ``losses/iou_aware.py``) + L1/GIoU box loss."""
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
    return SetCriterion(
        build_matcher(cfg),
        class_loss,
        BoxLoss(),
        weights={"class": l.class_weight, "bbox": l.bbox_weight, "giou": l.giou_weight},
        aux_loss=l.aux_loss,
        dn_class_loss=dn_class_loss,
        dn_weights=dn_weights,
    )
