"""Assemble a Detector from a ModelConfig: each architecture is a small function that picks the parts, found
by the type of ``model.arch`` in ``ARCH_BUILDERS`` (its config is in ``archs.py``). Every part below takes plain
typed arguments."""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..models.anchors import AnchorPosition, AnchorQueries
from ..models.decoders import CrossAttentionDecoderLayer, Decoder
from ..models.deformable import DeformableDecoderLayer, DeformableEncoderLayer
from ..models.detector import Detector
from ..models.encoders import Encoder, SelfAttentionEncoderLayer
from ..models.heads import DetectionHead
from ..models.neck import InputProjection
from ..models.plugins.smca import PredictedGaussian
from ..models.plugins.query_selection import MixedQuerySelection, TwoStageQueries
from ..models.postprocess import PostProcessor
from ..models.queries import LearnedQueries, ReferencePointQueries
from .archs import DabDeformableDetrArch, DeformableDetrArch, DetrArch, DinoArch, MaskDinoArch, SamDetrArch, SmcaDetrArch
from .backbone import build_backbone
from .mask_dino import build_mask_dino
from .model_config import ModelConfig
from .plugins import with_denoising
from .sam_detr import build_sam_detr


def build_detr(cfg: ModelConfig, arch: DetrArch | SmcaDetrArch, post: PostProcessor,
               modulation: nn.Module | None = None) -> Detector:
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
        neck=InputProjection(backbone.channels, t.hidden_dim, pos_offset=arch.pos_offset),
        encoder=Encoder(enc_layer, t.enc_layers),
        queries=LearnedQueries(t.num_queries, t.hidden_dim),
        decoder=Decoder(dec_layer, t.dec_layers, t.hidden_dim),
        head=DetectionHead(t.hidden_dim, cfg.num_classes),
        postprocessor=post,
    )


def _deformable_parts(cfg: ModelConfig, pos_offset: float) -> tuple[nn.Module, InputProjection, Encoder,
                                                                     DeformableDecoderLayer]:
    """Backbone, multi-scale projection, deformable encoder and decoder layer shared by the deformable family."""
    t = cfg.transformer
    backbone = build_backbone(cfg.backbone)
    extra = t.num_levels - len(backbone.channels)
    if extra < 0:
        raise ValueError(f"model.transformer.num_levels={t.num_levels} is fewer than the backbone's "
                         f"{len(backbone.channels)} return_levels")
    neck = InputProjection(backbone.channels, t.hidden_dim, group_norm=True, extra_levels=extra,
                           level_embed=True, pos_offset=pos_offset)
    enc_layer = DeformableEncoderLayer(t.hidden_dim, t.num_heads, t.num_levels, t.enc_points, t.dim_feedforward, t.dropout)
    dec_layer = DeformableDecoderLayer(t.hidden_dim, t.num_heads, t.num_levels, t.dec_points, t.dim_feedforward, t.dropout)
    return backbone, neck, Encoder(enc_layer, t.enc_layers), dec_layer


def _init_box_bias(head: DetectionHead, wh_logit: float) -> None:
    """Deformable-DETR: the first layer's boxes start as the reference point with ``wh = sigmoid(wh_logit)``
    (-2: 0.12). Only the first head: later layers refine a box that already has a size (the release)."""
    nn.init.constant_(head.bbox_embed[0].layers[-1].bias[2:], wh_logit)


def build_deformable_detr(cfg: ModelConfig, arch: DeformableDetrArch, post: PostProcessor) -> Detector:
    """Deformable-DETR (Zhu et al. 2021): plain, with iterative box refinement, or two-stage (which implies
    refinement in the published configurations but is independent here)."""
    t = cfg.transformer
    backbone, neck, encoder, dec_layer = _deformable_parts(cfg, arch.pos_offset)
    per_layer = arch.box_refine or arch.two_stage
    num_heads = (t.dec_layers + int(arch.two_stage)) if per_layer else 1
    head = DetectionHead(t.hidden_dim, cfg.num_classes, num_heads=num_heads, zero_box_init=True)
    if not arch.two_stage:
        _init_box_bias(head, -2.0)
    if arch.two_stage:
        queries: nn.Module = TwoStageQueries(t.hidden_dim, t.num_queries)
        if cfg.hybrid is not None:
            queries = cfg.hybrid.build(queries)
    elif cfg.hybrid is not None:
        raise ValueError("model.hybrid needs two-stage query selection (model.arch.two_stage=true)")
    else:
        queries = ReferencePointQueries(t.num_queries, t.hidden_dim)
    decoder = Decoder(dec_layer, t.dec_layers, t.hidden_dim, final_norm=False,
                      box_refine=head.box_delta if arch.box_refine else None)
    return Detector(backbone=backbone, neck=neck, encoder=encoder, queries=queries, decoder=decoder, head=head,
                    postprocessor=post)


def build_dab_deformable_detr(cfg: ModelConfig, arch: DabDeformableDetrArch, post: PostProcessor) -> Detector:
    """DAB-Deformable-DETR: Deformable-DETR with 4-d anchor queries, positional queries from the anchors
    and layer-by-layer anchor refinement (per-layer heads). With denoising it is DN-Deformable-DETR."""
    t = cfg.transformer
    backbone, neck, encoder, dec_layer = _deformable_parts(cfg, arch.pos_offset)
    head = DetectionHead(t.hidden_dim, cfg.num_classes, num_heads=t.dec_layers, zero_box_init=True)
    decoder = Decoder(dec_layer, t.dec_layers, t.hidden_dim, final_norm=False, box_refine=head.box_delta,
                      query_pos=AnchorPosition(t.hidden_dim, scale_by_content=True),
                      look_forward_twice=arch.look_forward_twice)
    queries = with_denoising(AnchorQueries(t.num_queries, t.hidden_dim), cfg)
    return Detector(backbone=backbone, neck=neck, encoder=encoder, queries=queries,
                    decoder=decoder, head=head, postprocessor=post)


def build_dino(cfg: ModelConfig, arch: DinoArch, post: PostProcessor) -> Detector:
    """DINO (Zhang et al. 2023): DAB-style anchors from mixed query selection, contrastive denoising,
    look forward twice; separate class/box heads for the 6 decoder layers and the encoder (7 in all) and a
    final decoder LayerNorm."""
    t = cfg.transformer
    backbone, neck, encoder, dec_layer = _deformable_parts(cfg, arch.pos_offset)
    head = DetectionHead(t.hidden_dim, cfg.num_classes, num_heads=t.dec_layers + 1, zero_box_init=True)
    queries = with_denoising(MixedQuerySelection(t.hidden_dim, t.num_queries), cfg)
    decoder = Decoder(dec_layer, t.dec_layers, t.hidden_dim, final_norm=True, box_refine=head.box_delta,
                      query_pos=AnchorPosition(t.hidden_dim, scale_by_content=False),
                      look_forward_twice=arch.look_forward_twice)
    return Detector(backbone=backbone, neck=neck, encoder=encoder, queries=queries, decoder=decoder, head=head,
                    postprocessor=post)


def build_smca_detr(cfg: ModelConfig, arch: SmcaDetrArch, post: PostProcessor) -> Detector:
    """SMCA-DETR baseline (single scale): DETR whose cross-attention logits get a Gaussian predicted from each
    query (``PredictedGaussian``); learned queries and one shared head as DETR."""
    return build_detr(cfg, arch, post, modulation=PredictedGaussian(cfg.transformer.hidden_dim,
                                                                    cfg.transformer.num_heads))


# The composition of each architecture config (compose/archs.py); each gets the one post-processor build_model
# makes (top-k, optional NMS) for its Detector.
ARCH_BUILDERS: dict[type, Callable[..., Detector]] = {
    DetrArch: build_detr,
    SmcaDetrArch: build_smca_detr,
    DeformableDetrArch: build_deformable_detr,
    DabDeformableDetrArch: build_dab_deformable_detr,
    DinoArch: build_dino,
    MaskDinoArch: build_mask_dino,  # Mask-DINO / Stable-MaskDINO (compose/mask_dino.py)
    SamDetrArch: build_sam_detr,  # SAM-DETR / SAM-DETR++ (compose/sam_detr.py)
}


def build_model(cfg: ModelConfig) -> Detector:
    """The architecture's composition, then the plug-ins every architecture accepts (memory fusion)."""
    post = PostProcessor(cfg.postprocess.topk, cfg.postprocess.nms_iou)
    detector = ARCH_BUILDERS[type(cfg.arch)](cfg, cfg.arch, post)
    if cfg.memory_fusion is not None:
        cfg.memory_fusion.apply(detector, cfg.transformer.hidden_dim)
    return detector
