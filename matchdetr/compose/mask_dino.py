"""Build Mask-DINO (and Stable-MaskDINO, the same composition with the stable-matching loss and cost) from a
ModelConfig (registered in ``detectors._ARCHS`` as ``mask_dino``)."""

from __future__ import annotations

from ..models.anchors import AnchorPosition
from ..models.decoders import Decoder
from ..models.deformable import DeformableDecoderLayer, DeformableEncoderLayer
from ..models.detector import Detector
from ..models.encoders import Encoder
from ..models.heads import DetectionHead
from ..models.neck import InputProjection
from ..models.plugins.mask_head import MaskHead
from ..models.plugins.mask_query_selection import MaskQuerySelection
from ..models.plugins.pixel_decoder import FineLevelNeck, PixelEmbedding
from ..models.postprocess import PostProcessor
from .archs import MaskDinoArch
from .backbone import build_backbone
from .model_config import ModelConfig
from .plugins import with_denoising


def build_mask_dino(cfg: ModelConfig, m: MaskDinoArch, post: PostProcessor) -> Detector:
    """Mask-DINO: DINO's deformable encoder and decoder over the backbone levels after the first, the
    first (stride 4) for the per-pixel embedding; one class, one box and one mask branch shared by every
    layer and the proposals (the release shares them); unified query selection with mask-enhanced anchors;
    denoising queries predict masks too."""
    t = cfg.transformer
    backbone = build_backbone(cfg.backbone)
    if cfg.backbone.return_levels[:1] != [2]:
        raise ValueError(f"model.arch=mask_dino reads masks at stride 4: model.backbone.return_levels must start "
                         f"with 2, got {cfg.backbone.return_levels}")
    channels = backbone.channels
    extra = t.num_levels - (len(channels) - 1)
    if extra < 0:
        raise ValueError(f"model.transformer.num_levels={t.num_levels} is fewer than the backbone's "
                         f"{len(channels) - 1} levels after the stride-4 one")
    neck = FineLevelNeck(InputProjection(channels[1:], t.hidden_dim, group_norm=True, extra_levels=extra,
                                         level_embed=True, pos_offset=m.pos_offset), channels[0], t.hidden_dim)
    enc_layer = DeformableEncoderLayer(t.hidden_dim, t.num_heads, t.num_levels, t.enc_points, m.encoder_ffn_dim,
                                       t.dropout)
    dec_layer = DeformableDecoderLayer(t.hidden_dim, t.num_heads, t.num_levels, t.dec_points, t.dim_feedforward, t.dropout)
    head = MaskHead(DetectionHead(t.hidden_dim, cfg.num_classes, num_heads=1, zero_box_init=True), t.hidden_dim,
                    m.mask_dim)
    queries = with_denoising(MaskQuerySelection(t.hidden_dim, t.num_queries, box_init=m.box_init,
                                                initial_pred=m.initial_pred), cfg)
    decoder = Decoder(dec_layer, t.dec_layers, t.hidden_dim, final_norm=True, box_refine=head.box_delta,
                      query_pos=AnchorPosition(t.hidden_dim, scale_by_content=False),
                      look_forward_twice=m.look_forward_twice)
    return Detector(backbone=backbone, neck=neck, encoder=Encoder(enc_layer, t.enc_layers), queries=queries,
                    decoder=decoder, head=head, postprocessor=post, fusion=PixelEmbedding(t.hidden_dim, m.mask_dim),
                    size_divisibility=m.size_divisibility, padding_is_content=m.padding_is_content)
