"""Input projection: backbone levels -> ``d``-channel maps with masks and positional embeddings."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .masks import downsample_mask

from .memory import Memory, flatten_levels
from .position import PositionEmbeddingSine


class InputProjection(nn.Module):
    """Project each backbone level to ``dim`` channels and attach sine positional embeddings.

    DETR: one 1x1 conv on C5. Deformable-DETR: 1x1 conv + GroupNorm(32) per level plus ``extra_levels`` 3x3
    stride-2 convs on the last map, and a learned level embedding added to the positions.

    xavier: Xavier-uniform conv weights and zero biases (Deformable-DETR); False keeps Conv2d's default
    initialisation (SAM-DETR's release).
    """

    def __init__(
        self,
        in_channels: list[int],
        dim: int,
        group_norm: bool = False,
        extra_levels: int = 0,
        level_embed: bool = False,
        pos_offset: float = 0.0,
        xavier: bool = True,
    ) -> None:
        super().__init__()

        def block(cin: int, kernel: int, stride: int) -> nn.Module:
            conv = nn.Conv2d(cin, dim, kernel, stride=stride, padding=kernel // 2)
            return nn.Sequential(conv, nn.GroupNorm(32, dim)) if group_norm else nn.Sequential(conv)

        self.proj = nn.ModuleList(block(c, 1, 1) for c in in_channels)
        chans = [in_channels[-1]] + [dim] * max(extra_levels - 1, 0)
        self.extra = nn.ModuleList(block(c, 3, 2) for c in chans[:extra_levels])
        # Deformable-DETR measures positions from pixel centres (offset -0.5); DETR from pixel ends (0).
        self.position = PositionEmbeddingSine(dim // 2, normalize=True, offset=pos_offset)
        num_levels = len(in_channels) + extra_levels
        self.level_embed = nn.Parameter(torch.zeros(num_levels, dim)) if level_embed else None
        for seq in list(self.proj) + list(self.extra) if xavier else []:
            nn.init.xavier_uniform_(seq[0].weight, gain=1)
            nn.init.zeros_(seq[0].bias)
        if self.level_embed is not None:
            nn.init.normal_(self.level_embed)

    def forward(self, features: list[tuple[Tensor, Tensor]], pixel_mask: Tensor) -> Memory:
        """features: per level ``(map [B, C_l, h, w], mask [B, h, w])``; pixel_mask ``[B, H, W]`` True on
        padding (extra levels take their mask from it, as Deformable-DETR does) -> flattened :class:`Memory`."""
        maps = [p(f) for p, (f, _) in zip(self.proj, features)]
        masks = [m for _, m in features]
        src = features[-1][0]
        for conv in self.extra:
            src = conv(src)
            maps.append(src)
            masks.append(downsample_mask(pixel_mask, src.shape[-2:]))
        pos = [self.position(m, dtype=x.dtype) for x, m in zip(maps, masks)]
        if self.level_embed is not None:
            pos = [p + self.level_embed[i].view(1, -1, 1, 1) for i, p in enumerate(pos)]
        return flatten_levels(maps, masks, pos)

