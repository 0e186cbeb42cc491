"""Mask-DINO's per-pixel embedding (Li et al. CVPR 2023, sec 3.2; the release's ``MaskDINOEncoder``): masks are
read at stride 4, finer than any level the deformable encoder attends to.

1. ``FineLevelNeck`` (the neck slot): the backbone's first, stride-4 level (C2) is projected by a lateral
   ``Conv1x1 + GroupNorm`` and kept aside in ``Memory.fine``; the other levels go through the usual projection.
2. ``PixelEmbedding`` (the fusion slot, after the encoder): ``fine + upsample(finest encoded level)`` (bilinear,
   the release's FPN step) -> ``Conv3x3 + GroupNorm + ReLU`` -> ``Conv1x1`` = ``Memory.pixel_embed``.
Each query's mask is then the dot product of its mask embedding with this map (``mask_head.py``).
"""

from __future__ import annotations

from dataclasses import replace

import torch.nn.functional as F
from torch import Tensor, nn

from ..memory import Memory


def _c2_xavier(conv: nn.Conv2d) -> None:
    """detectron2's ``c2_xavier_fill`` (the release's init of these convs): Kaiming-uniform with a=1, zero bias."""
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class FineLevelNeck(nn.Module):
    """Wraps a neck: ``features[0]`` (stride 4) becomes ``Memory.fine``, ``features[1:]`` the memory tokens."""

    def __init__(self, neck: nn.Module, fine_channels: int, dim: int) -> None:
        super().__init__()
        self.neck = neck
        self.lateral = nn.Sequential(nn.Conv2d(fine_channels, dim, 1, bias=False), nn.GroupNorm(32, dim))
        _c2_xavier(self.lateral[0])

    def forward(self, features: list[tuple[Tensor, Tensor]], pixel_mask: Tensor) -> Memory:
        """features: per level ``(map, mask)``, the stride-4 level first -> Memory with ``fine`` set."""
        if len(features) < 2:
            raise ValueError("the pixel embedding needs the stride-4 backbone level and at least one more: "
                             "model.backbone.return_levels must start with 2")
        memory = self.neck(features[1:], pixel_mask)
        return replace(memory, fine=self.lateral(features[0][0]))


class PixelEmbedding(nn.Module):
    """``Memory -> Memory`` with ``pixel_embed`` from ``fine`` and the finest encoded level (module docstring)."""

    def __init__(self, dim: int, mask_dim: int) -> None:
        super().__init__()
        self.output = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, bias=False), nn.GroupNorm(32, dim), nn.ReLU())
        self.embed = nn.Conv2d(dim, mask_dim, 1)
        _c2_xavier(self.output[0])
        _c2_xavier(self.embed)

    def forward(self, memory: Memory) -> Memory:
        if memory.fine is None:
            raise ValueError("PixelEmbedding needs Memory.fine: build the neck with FineLevelNeck")
        # level 0 is the finest: backbone levels come in ascending stride, the extra levels after them
        up = F.interpolate(memory.token_map(0), size=memory.fine.shape[-2:], mode="bilinear", align_corners=False)
        return replace(memory, pixel_embed=self.embed(self.output(memory.fine + up)))
