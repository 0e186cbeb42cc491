"""Build SAM-DETR and SAM-DETR++ (their SMCA and denoising combinations) from a ModelConfig (registered in
``detectors._ARCHS``)."""

from __future__ import annotations

from torch import nn

from ..models.decoders import Decoder
from ..models.deformable import DeformableEncoderLayer
from ..models.detector import Detector
from ..models.encoders import Encoder, SelfAttentionEncoderLayer
from ..models.heads import DetectionHead
from ..models.init import xavier_transformer_
from ..models.neck import InputProjection
from ..models.plugins.coarse_to_fine import CoarseToFine, coarse_to_fine
from ..models.plugins.semantic_aligner import SemanticAligner
from ..models.plugins.smca import KeypointGaussian
from ..models.postprocess import PostProcessor
from ..models.queries import ReferenceBoxQueries
from ..models.sam_decoder_layer import SamDecoderLayer
from .archs import SamDetrArch
from .backbone import build_backbone
from .model_config import ModelConfig
from .plugins import with_denoising


def _encoder_and_neck(cfg: ModelConfig, s: SamDetrArch, channels: list[int]) -> tuple[InputProjection, Encoder]:
    """Single scale: DETR's global self-attention encoder on C5 (optionally GroupNorm after the projection).
    Multi-scale (SAM-DETR++ sec 4.3): Conv1x1 + GroupNorm per level, level embeddings and a deformable
    encoder over every level (extra stride-2 levels when ``num_levels`` exceeds the backbone's)."""
    t = cfg.transformer
    # The release embeds the grid in Deformable-DETR's form for EVERY variant (s.pos_offset, normalised by the valid
    # extent) and leaves the projection at Conv2d's default init.
    if not s.multiscale:
        neck = InputProjection(channels, t.hidden_dim, group_norm=s.group_norm, pos_offset=s.pos_offset, xavier=False)
        layer: nn.Module = SelfAttentionEncoderLayer(t.hidden_dim, t.num_heads, t.dim_feedforward, t.dropout)
        return neck, Encoder(layer, t.enc_layers)
    extra = t.num_levels - len(channels)
    if extra < 0:
        raise ValueError(f"model.transformer.num_levels={t.num_levels} is fewer than the backbone's "
                         f"{len(channels)} return_levels")
    neck = InputProjection(channels, t.hidden_dim, group_norm=True, extra_levels=extra, level_embed=True,
                           pos_offset=s.pos_offset, xavier=False)
    layer = DeformableEncoderLayer(t.hidden_dim, t.num_heads, t.num_levels, t.enc_points, s.encoder_ffn_dim, t.dropout)
    return neck, Encoder(layer, t.enc_layers)


def build_sam_detr(cfg: ModelConfig, s: SamDetrArch, post: PostProcessor) -> Detector:
    """SAM-DETR (single scale) or SAM-DETR++ (``sam.multiscale``): learnable reference boxes, the Semantics
    Aligner in every decoder layer, optional SMCA on the keypoints and DN-DETR denoising; per-layer class and
    box heads (box deltas start at zero)."""
    t = cfg.transformer
    backbone = build_backbone(cfg.backbone)
    neck, encoder = _encoder_and_neck(cfg, s, backbone.channels)
    modulation = KeypointGaussian() if s.smca else None
    aligner = SemanticAligner(t.hidden_dim, t.num_heads, s.resample, s.reweight, s.search_range,
                              extra_outputs=KeypointGaussian.extra_outputs if s.smca else 0,
                              roi_size=s.roi_size, sampling_ratio=s.sampling_ratio)
    layer = SamDecoderLayer(t.hidden_dim, t.num_heads, t.dim_feedforward, t.dropout, aligner, modulation)
    head = DetectionHead(t.hidden_dim, cfg.num_classes, num_heads=t.dec_layers, zero_box_init=True)
    # the shared decoder with box refinement and no final norm (as released); SAM-DETR++ reads one level per
    # layer, coarsest first (sec 4.3)
    view = CoarseToFine(coarse_to_fine(t.dec_layers, t.num_levels)) if s.multiscale else None
    decoder = Decoder(layer, t.dec_layers, t.hidden_dim, final_norm=False, box_refine=head.box_delta,
                      memory_view=view)
    # the release's Transformer._reset_parameters: Xavier over every weight matrix of encoder and decoder
    # (the box head the decoder refers to is not its own: not re-initialised)
    xavier_transformer_([encoder, decoder.layers])
    # with denoising, noised GT boxes become extra reference boxes (sec 4.5.2)
    queries = with_denoising(ReferenceBoxQueries(t.num_queries, t.hidden_dim), cfg)
    return Detector(backbone=backbone, neck=neck, encoder=encoder, queries=queries, decoder=decoder, head=head,
                    postprocessor=post)
