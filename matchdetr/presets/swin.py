"""Swin Transformer presets: detrex's DINO-Swin models, Stable-DINO's headline Swin-L models and Mask-DINO on
Swin-L. Each is its ResNet-50 preset with the release's Swin backbone (detectron2's Swin, nothing frozen, levels
p1-p3, or p0-p3 for 5 scales) and the release's recipe, which for DINO-Swin is DINO-R50's (lr 1e-4, backbone
x0.1, weight decay 1e-4, gradient clip 0.1, 12 epochs with the drop at 11; detrex
``projects/dino/configs/dino-swin/dino_swin_*_12ep.py``).

The ImageNet weights are not shipped: give Microsoft's file with ``--set model.backbone.weights=...`` (e.g.
``swin_large_patch4_window12_384_22kto1k.pth``, which the detrex configs name as ``train.init_checkpoint``).
"""

from __future__ import annotations

from ..config import Config
from ..models.swin import SwinConfig
from . import detr_family, mask_dino
from .registry import preset
from .stable import stable


def _swin(cfg: Config, size: str, **fields: object) -> Config:
    """``cfg`` on a Swin backbone of ``size`` at the levels its ResNet read (nothing frozen, as released)."""
    cfg.model.backbone = SwinConfig.of(size, return_levels=list(cfg.model.backbone.return_levels), **fields)
    return cfg


@preset("dino-4scale-swin-t")
def dino_4scale_swin_t() -> Config:
    """DINO-4scale Swin-T-224 (detrex: 51.3 AP at 12 epochs from IN-1k, 52.5 from IN-22k->1k)."""
    return _swin(detr_family.dino_4scale_r50(), "swin-t")


@preset("dino-4scale-swin-l")
def dino_4scale_swin_l() -> Config:
    """DINO-4scale Swin-L-384, window 12 (detrex: 56.9 AP at 12 epochs, 58.1 at 36)."""
    return _swin(detr_family.dino_4scale_r50(), "swin-l-384")


@preset("dino-5scale-swin-l")
def dino_5scale_swin_l() -> Config:
    """DINO-5scale Swin-L-384 (detrex: 57.5 AP at 12 epochs, 58.5 at 36)."""
    return _swin(detr_family.dino_5scale_r50(), "swin-l-384")


@preset("stable-dino-4scale-swin-l")
def stable_dino_4scale_swin_l() -> Config:
    """Stable-DINO-4scale Swin-L (IN-22K): 57.7 AP at 12 epochs, 58.6 at 24 (Stable-DINO table 3)."""
    return stable(dino_4scale_swin_l())


@preset("stable-dino-5scale-swin-l")
def stable_dino_5scale_swin_l() -> Config:
    """Stable-DINO-5scale Swin-L (the paper publishes no 5-scale Swin-L figure; its table 3 is 4-scale only)."""
    return stable(dino_5scale_swin_l())


@preset("maskdino-swin-l")
def maskdino_swin_l() -> Config:
    """Mask-DINO on Swin-L-384 as the release's Swin-L instance config sets the backbone (window 12, drop path 0.3,
    ``configs/coco/instance-segmentation/swin/maskdino_R50_bs16_50ep_4s_dowsample1_2048.yaml``), in our
    Mask-DINO composition (encoder over C3-C5, C2 for the pixel embedding). The release's own Swin-L model reads
    its levels fine to coarse with 2048-wide queries (a ``*_2048`` model), which converts with a refusal."""
    return _swin(mask_dino.maskdino_r50(), "swin-l-384", drop_path_rate=0.3)
