"""Assemble a Detector from a ModelConfig: each architecture is a small function that picks the parts; a new
architecture adds one function to ``_ARCHS``. Every part below takes plain typed arguments."""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..config import ModelConfig
from ..models.anchors import AnchorPosition, AnchorQueries
from ..models.decoders import CrossAttentionDecoderLayer, Decoder
from ..models.deformable import DeformableDecoderLayer, DeformableEncoderLayer
from ..models.detector import Detector
from ..models.encoders import Encoder, SelfAttentionEncoderLayer
from ..models.heads import DetectionHead
from ..models.neck import InputProjection
from ..models.plugins.hybrid_matching import HybridQueries
from ..models.plugins.memory_fusion import add_memory_fusion
from ..models.plugins.smca import PredictedGaussian
from ..models.plugins.query_selection import MixedQuerySelection, TwoStageQueries
from ..models.postprocess import PostProcessor
from ..models.queries import LearnedQueries, ReferencePointQueries
from .backbone import build_backbone
from .mask_dino import build_mask_dino
from .plugins import with_denoising
from .sam_detr import build_sam_detr


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


def build_dab_deformable_detr(cfg: ModelConfig, post: PostProcessor) -> Detector:
    """DAB-Deformable-DETR: Deformable-DETR with 4-d anchor queries, positional queries from the anchors
    and layer-by-layer anchor refinement (per-layer heads). With denoising it is DN-Deformable-DETR."""
    t = cfg.transformer
    backbone, neck, encoder, dec_layer = _deformable_parts(cfg)
    head = DetectionHead(t.hidden_dim, cfg.num_classes, num_heads=t.dec_layers, zero_box_init=True)
    decoder = Decoder(dec_layer, t.dec_layers, t.hidden_dim, final_norm=False, box_refine=head.box_delta,
                      query_pos=AnchorPosition(t.hidden_dim, scale_by_content=True),
                      look_forward_twice=t.look_forward_twice)
    queries = with_denoising(AnchorQueries(t.num_queries, t.hidden_dim), cfg)
    return Detector(backbone=backbone, neck=neck, encoder=encoder, queries=queries,
                    decoder=decoder, head=head, postprocessor=post)


def build_dino(cfg: ModelConfig, post: PostProcessor) -> Detector:
    """DINO (Zhang et al. 2023): DAB-style anchors from mixed query selection, contrastive denoising,
    look forward twice; separate class/box heads for the 6 decoder layers and the encoder (7 in all) and a
    final decoder LayerNorm."""
    t = cfg.transformer
    backbone, neck, encoder, dec_layer = _deformable_parts(cfg)
    head = DetectionHead(t.hidden_dim, cfg.num_classes, num_heads=t.dec_layers + 1, zero_box_init=True)
    queries = with_denoising(MixedQuerySelection(t.hidden_dim, t.num_queries, head, enc_index=t.dec_layers), cfg)
    decoder = Decoder(dec_layer, t.dec_layers, t.hidden_dim, final_norm=True, box_refine=head.box_delta,
                      query_pos=AnchorPosition(t.hidden_dim, scale_by_content=False),
                      look_forward_twice=t.look_forward_twice)
    return Detector(backbone=backbone, neck=neck, encoder=encoder, queries=queries, decoder=decoder, head=head,
                    postprocessor=post)


def build_smca_detr(cfg: ModelConfig, post: PostProcessor) -> Detector:
    """SMCA-DETR baseline (single scale): DETR whose cross-attention logits get a Gaussian predicted from each
    query (``PredictedGaussian``); learned queries and one shared head as DETR."""
    return build_detr(cfg, post, modulation=PredictedGaussian(cfg.transformer.hidden_dim, cfg.transformer.num_heads))


# Each composition gets the one post-processor build_model makes (top-k, optional NMS) for its Detector.
_ARCHS: dict[str, Callable[[ModelConfig, PostProcessor], Detector]] = {
    "detr": build_detr,
    "deformable_detr": build_deformable_detr,
    "dab_deformable_detr": build_dab_deformable_detr,
    "dino": build_dino,
    "mask_dino": build_mask_dino,  # Mask-DINO / Stable-MaskDINO (compose/mask_dino.py)
    "sam_detr": build_sam_detr,  # SAM-DETR / SAM-DETR++ (compose/sam_detr.py)
    "smca_detr": build_smca_detr,
}


def build_model(cfg: ModelConfig) -> Detector:
    """The architecture's composition, then the plug-ins every architecture accepts (memory fusion)."""
    if cfg.arch not in _ARCHS:
        raise ValueError(f"unknown model.arch '{cfg.arch}'; available: {', '.join(sorted(_ARCHS))}")
    detector = _ARCHS[cfg.arch](cfg, PostProcessor(cfg.postprocess.topk, cfg.postprocess.nms_iou))
    add_memory_fusion(detector, cfg.memory_fusion, cfg.transformer.hidden_dim)
    return detector
