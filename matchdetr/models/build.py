"""Assemble a Detector and its criterion from a ModelConfig.

This is the only place that reads config objects; every part below it takes plain typed arguments. Each
architecture is a small function that picks the parts; new architectures add one function to ``_ARCHS``.
"""

from __future__ import annotations

from typing import Callable

from ..config import ModelConfig
from ..losses.boxes import BoxLoss
from ..losses.criterion import SetCriterion
from ..losses.focal import FocalClassLoss
from ..matching.costs import FocalClassCost, GIoUCost, L1BoxCost
from ..matching.hungarian import HungarianMatcher
from .backbone import build_backbone
from .decoders import CrossAttentionDecoderLayer, Decoder
from .detector import Detector
from .encoders import Encoder, SelfAttentionEncoderLayer
from .heads import DetectionHead
from .neck import InputProjection
from .postprocess import PostProcessor
from .queries import LearnedQueries


def build_detr(cfg: ModelConfig) -> Detector:
    """DETR with focal loss and 300 queries (SAM-DETR++ table 1, "DETR-dagger"): single level, global
    self-attention encoder, cross-attention decoder with learned queries, one shared head."""
    t = cfg.transformer
    backbone = build_backbone(cfg.backbone)
    enc_layer = SelfAttentionEncoderLayer(t.hidden_dim, t.num_heads, t.dim_feedforward, t.dropout, t.pre_norm)
    dec_layer = CrossAttentionDecoderLayer(t.hidden_dim, t.num_heads, t.dim_feedforward, t.dropout, t.pre_norm)
    return Detector(
        backbone=backbone,
        neck=InputProjection(backbone.channels, t.hidden_dim),
        encoder=Encoder(enc_layer, t.enc_layers),
        queries=LearnedQueries(t.num_queries, t.hidden_dim),
        decoder=Decoder(dec_layer, t.dec_layers, t.hidden_dim),
        head=DetectionHead(t.hidden_dim, cfg.num_classes),
        postprocessor=PostProcessor(cfg.postprocess.topk),
    )


_ARCHS: dict[str, Callable[[ModelConfig], Detector]] = {"detr": build_detr}


def build_model(cfg: ModelConfig) -> Detector:
    if cfg.arch not in _ARCHS:
        raise ValueError(f"unknown model.arch '{cfg.arch}'; available: {', '.join(sorted(_ARCHS))}")
    return _ARCHS[cfg.arch](cfg)


def build_criterion(cfg: ModelConfig) -> SetCriterion:
    """Focal class loss + L1/GIoU box loss, matched with focal/L1/GIoU costs (detr-family spec, "Matching")."""
    m, l = cfg.matcher, cfg.loss
    matcher = HungarianMatcher(
        [
            (m.cost_class, FocalClassCost(m.focal_alpha, m.focal_gamma)),
            (m.cost_bbox, L1BoxCost()),
            (m.cost_giou, GIoUCost()),
        ]
    )
    return SetCriterion(
        matcher,
        FocalClassLoss(l.focal_alpha, l.focal_gamma),
        BoxLoss(),
        weights={"class": l.class_weight, "bbox": l.bbox_weight, "giou": l.giou_weight},
        aux_loss=l.aux_loss,
    )
