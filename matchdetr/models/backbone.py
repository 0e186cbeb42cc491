"""ResNet backbone with torchvision's parameter names, frozen BatchNorm and DC5 dilation.

The ResNet lives at ``Backbone.body`` and uses exactly torchvision's module names below it (``conv1``, ``bn1``,
``layer1.0.conv1``, ``layer1.0.downsample.0``, ...; no ``fc``), so the backbone's state-dict keys are
``body.<torchvision key>`` and a torchvision ImageNet file loads into ``Backbone.body`` without renaming
(``matchdetr.interop.torchvision_resnet``). Bottleneck blocks stride on the 3x3 conv ("ResNet v1.5"), as
torchvision does.

Stages are named by stride exponent, as the DETR papers name feature levels: level 2 = ``layer1`` (C2, stride
4), 3 = ``layer2`` (C3, 8), 4 = ``layer3`` (C4, 16), 5 = ``layer4`` (C5, 32; 16 with DC5 dilation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..fields import Component, knob
from .masks import downsample_mask


# name -> (block type, blocks per stage); the published ResNet depths (He et al. 2016, table 1).
_ARCHS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}
LEVELS = (2, 3, 4, 5)


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d whose affine and statistics are fixed buffers (DETR's ``FrozenBatchNorm2d``).

    Detection batches are 1-4 images per GPU, far too few for useful batch statistics, so the ImageNet
    statistics are kept and the layer is a fixed per-channel scale and shift. ``[B, C, H, W] -> [B, C, H, W]``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):  # type: ignore[no-untyped-def]
        # torchvision's BatchNorm2d saves a step counter we have no use for; drop it so strict loads pass.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def scale_shift(self) -> tuple[Tensor, Tensor]:
        """``[C]`` scale and shift with ``y = x * scale + shift``."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: Tensor) -> Tensor:
        scale, shift = self.scale_shift()
        return x * scale[None, :, None, None] + shift[None, :, None, None]

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def conv_norm(conv: nn.Conv2d, norm: nn.Module, x: Tensor) -> Tensor:
    """``norm(conv(x))``, with a frozen BatchNorm folded into the convolution: the per-channel affine map
    scales the kernel and becomes its bias, so the activations are written once instead of twice. Exact in
    training too (gradients reach ``conv.weight`` through the scaling); parameter names are unchanged."""
    if isinstance(norm, FrozenBatchNorm2d):
        scale, shift = norm.scale_shift()
        weight = conv.weight * scale.to(conv.weight.dtype).view(-1, 1, 1, 1)
        return F.conv2d(x, weight, shift.to(conv.weight.dtype), conv.stride, conv.padding, conv.dilation, conv.groups)
    return norm(conv(x))


NormFactory = Optional[Callable[[int], nn.Module]]
NORMS: dict[str, Callable[[int], nn.Module]] = {"frozen_bn": FrozenBatchNorm2d, "bn": nn.BatchNorm2d}


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual (ResNet-18/34). ``[B, cin, H, W] -> [B, planes, H/stride, W/stride]``.

    Unlike torchvision this also accepts ``dilation > 1`` (DC5 on ResNet-18/34); the parameters are the same.
    """

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 dilation: int = 1, norm: NormFactory = None) -> None:
        super().__init__()
        norm = norm or FrozenBatchNorm2d
        self.conv1 = _conv3x3(cin, planes, stride, dilation)
        self.bn1 = norm(planes)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = norm(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else conv_norm(self.downsample[0], self.downsample[1], x)
        out = self.relu(conv_norm(self.conv1, self.bn1, x))
        out = conv_norm(self.conv2, self.bn2, out)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided, "v1.5") -> 1x1 x4 with a residual (ResNet-50/101).

    ``[B, cin, H, W] -> [B, 4 * planes, H/stride, W/stride]``.
    """

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 dilation: int = 1, norm: NormFactory = None) -> None:
        super().__init__()
        norm = norm or FrozenBatchNorm2d
        self.conv1 = _conv1x1(cin, planes)
        self.bn1 = norm(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = norm(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = norm(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else conv_norm(self.downsample[0], self.downsample[1], x)
        out = self.relu(conv_norm(self.conv1, self.bn1, x))
        out = self.relu(conv_norm(self.conv2, self.bn2, out))
        out = conv_norm(self.conv3, self.bn3, out)
        return self.relu(out + identity)


class ResNetBody(nn.Module):
    """torchvision's ResNet without ``avgpool``/``fc``, built only up to stage ``num_stages`` (1..4).

    Stages past the deepest level a detector uses are not built at all (as DETR's ``IntermediateLayerGetter``
    drops them), so no parameter is left without a gradient (which DDP would reject). ``forward`` maps
    ``[B, 3, H, W]`` to ``{level: [B, C_level, H_level, W_level]}`` for every built stage.
    """

    def __init__(self, name: str, width: int = 64, dilation: bool = False, num_stages: int = 4,
                 norm: NormFactory = None) -> None:
        super().__init__()
        norm = norm or FrozenBatchNorm2d
        if name not in _ARCHS:
            raise ValueError(f"unknown backbone '{name}'; valid: {', '.join(_ARCHS)}")
        if width < 1 or not 1 <= num_stages <= 4:
            raise ValueError(f"backbone width must be >= 1 and num_stages in 1..4, got {width}, {num_stages}")
        kind, depths = _ARCHS[name]
        block: type[BasicBlock] | type[Bottleneck] = BasicBlock if kind == "basic" else Bottleneck
        self.num_stages = num_stages
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = norm(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.channels: list[int] = []
        cin, cur_dilation = width, 1
        for i in range(num_stages):
            planes, stride = width * 2**i, (1 if i == 0 else 2)
            # DC5 (torchvision's replace_stride_with_dilation=[False, False, True]): the last stage keeps
            # stride 16 and dilates its 3x3 convs by 2 instead; its first block still uses the old dilation.
            prev_dilation = cur_dilation
            if dilation and i == 3:
                cur_dilation, stride = cur_dilation * stride, 1
            downsample = None
            if stride != 1 or cin != planes * block.expansion:
                downsample = nn.Sequential(_conv1x1(cin, planes * block.expansion, stride),
                                           norm(planes * block.expansion))
            blocks = [block(cin, planes, stride, downsample, prev_dilation, norm)]
            cin = planes * block.expansion
            blocks += [block(cin, planes, 1, None, cur_dilation, norm) for _ in range(1, depths[i])]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            self.channels.append(cin)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # torchvision's init, for training without ImageNet weights
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> dict[int, Tensor]:
        x = self.maxpool(self.relu(conv_norm(self.conv1, self.bn1, x)))
        out: dict[int, Tensor] = {}
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
            out[i + 2] = x
        return out


class Backbone(nn.Module):
    """ResNet feature extractor returning selected levels with their padding masks.

    State-dict prefix: ``body.`` followed by torchvision's ResNet keys (e.g. ``body.layer4.2.bn3.running_var``).

    Args:
        name: ``resnet18 | resnet34 | resnet50 | resnet101``.
        width: stem width; 64 is torchvision's, smaller values scale every stage's channels proportionally.
        frozen_stages: 0 nothing frozen, 1 stem (conv1 + bn1), 2 stem + layer1 (DETR), ..., 5 everything;
            sets ``requires_grad=False`` on those stages' parameters.
        norm: ``frozen_bn`` (DETR: pretrained statistics kept fixed) or ``bn`` (trainable BatchNorm, for
            training from scratch, where frozen identity statistics would leave the net unnormalised).
        dilation: DC5, dilate the last stage so level 5 has stride 16.
        return_levels: stride exponents of the returned maps, from {2, 3, 4, 5}; returned in ascending order.

    Attributes ``channels`` and ``strides`` list the returned levels' channels and strides in that order.
    """

    def __init__(self, name: str, *, width: int = 64, frozen_stages: int = 2, dilation: bool = False,
                 return_levels: Sequence[int] = (5,), norm: str = "frozen_bn") -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"backbone norm must be one of {', '.join(NORMS)}, got '{norm}'")
        levels = sorted(set(return_levels))
        if not levels or any(lvl not in LEVELS for lvl in levels):
            raise ValueError(f"backbone return_levels must be a non-empty subset of {list(LEVELS)}, "
                             f"got {list(return_levels)}")
        if not 0 <= frozen_stages <= 5:
            raise ValueError(f"backbone frozen_stages must be in 0..5, got {frozen_stages}")
        self.return_levels = tuple(levels)
        self.body = ResNetBody(name, width, dilation, num_stages=levels[-1] - 1, norm=NORMS[norm])
        self.channels = [self.body.channels[lvl - 2] for lvl in levels]
        self.strides = [2 ** (lvl - 1) if dilation and lvl == 5 else 2**lvl for lvl in levels]
        self.frozen_stages = frozen_stages
        stages: list[list[nn.Module]] = [[self.body.conv1, self.body.bn1]]
        stages += [[getattr(self.body, f"layer{i + 1}")] for i in range(self.body.num_stages)]
        for stage in stages[:frozen_stages]:
            for module in stage:
                module.requires_grad_(False)

    def forward(self, images: Tensor, pixel_mask: Tensor) -> list[tuple[Tensor, Tensor]]:
        """``images [B, 3, H, W]``, ``pixel_mask [B, H, W]`` bool, True on padding (see :func:`level_outputs`)."""
        return level_outputs(self.body, self.return_levels, images, pixel_mask)


def level_outputs(body: Callable[[Tensor], dict[int, Tensor]], levels: Sequence[int], images: Tensor,
                  pixel_mask: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Run ``body`` (images -> ``{level: map}``) and return one ``(feature [B, C, h, w], mask [B, h, w] bool)``
    per level of ``levels``, fine to coarse; the mask is the pixel mask resized by nearest interpolation to the
    feature size, as DETR does. ``images [B, 3, H, W]``, ``pixel_mask [B, H, W]`` True on padding."""
    if images.dim() != 4 or pixel_mask.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"backbone expects images [B, 3, H, W] and pixel_mask [B, H, W], got "
                         f"{tuple(images.shape)} and {tuple(pixel_mask.shape)}")
    # Channels-last runs the convolutions ~15% faster on CPU (oneDNN) and suits tensor cores on GPU.
    feats = body(images.contiguous(memory_format=torch.channels_last))
    return [(feats[lvl], downsample_mask(pixel_mask, feats[lvl].shape[-2:])) for lvl in levels]


@dataclass
class ResNetConfig(Component):
    """A ResNet (torchvision's names and weights; He et al. 2016), the backbone of the papers' R50 models."""

    kind = "resnet"
    depth: int = knob(50, choices=(18, 34, 50, 101))  # ResNet-18/34 (basic blocks), -50/101 (bottlenecks)
    width: int = knob(64, ge=1)  # stem / first-stage width; 64 is torchvision's, smaller values make a narrower net
    frozen_stages: int = knob(2, ge=0, le=5)  # 0: nothing frozen, 1: stem, 2: stem + layer1 (DETR), 5: everything
    norm: str = knob("frozen_bn", choices=tuple(NORMS))  # frozen_bn (pretrained, DETR) | bn (trainable; from scratch)
    dilation: bool = False  # DC5: dilate the last stage (stride 16 instead of 32)
    return_levels: list[int] = knob(factory=lambda: [5], ge=2, le=5, min_items=1)  # C2..C5 by stride exponent
    weights: str | None = None  # a torchvision ImageNet ResNet state-dict file (.pth or .safetensors); None: random
    # > 0 (and no `weights`): before detection training, train the ResNet for this many epochs as a classifier of
    # the training set's box crops, the stand-in for ImageNet weights (engine/backbone_pretrain.py; cached).
    pretrain_epochs: int = knob(0, ge=0)
    pretrain_size: int = knob(64, ge=8)  # side of those crops in pixels

    def build(self) -> "Backbone":
        return Backbone(f"resnet{self.depth}", width=self.width, frozen_stages=self.frozen_stages,
                        dilation=self.dilation, return_levels=tuple(self.return_levels), norm=self.norm)
