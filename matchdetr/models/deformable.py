"""Deformable-DETR's encoder and decoder layers (Zhu et al. 2021, sec 4.1).

Both read the flattened multi-scale :class:`~matchdetr.models.memory.Memory` through multi-scale deformable
attention: each query samples a few points per level around its reference instead of attending to every token.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .attention import MultiheadAttention
from .deformable_attention import MSDeformAttn
from .layers import FeedForward, with_pos
from .memory import Memory


def encoder_reference_points(memory: Memory) -> Tensor:
    """``[B, S, L, 2]``: every token's pixel centre, normalised to the valid region of its level and then
    expressed on each level's map (Deformable-DETR's ``get_reference_points``). Computed once per forward and
    cached on the Memory, since every encoder layer needs the same points."""
    cached = memory.cache.get("encoder_reference_points")
    if cached is not None:
        return cached
    vr = memory.valid_ratios  # [B, L, 2] (w, h)
    points = []
    for lvl, (h, w) in enumerate(memory.shapes):
        # arange + 0.5 equals linspace(0.5, h - 0.5, h) bit for bit, and also traces with a tensor h (export)
        ys, xs = torch.meshgrid(
            torch.arange(h, dtype=vr.dtype, device=vr.device) + 0.5,
            torch.arange(w, dtype=vr.dtype, device=vr.device) + 0.5,
            indexing="ij",
        )
        ys = ys.reshape(-1)[None] / (vr[:, None, lvl, 1] * h)
        xs = xs.reshape(-1)[None] / (vr[:, None, lvl, 0] * w)
        points.append(torch.stack((xs, ys), -1))
    ref = torch.cat(points, 1)[:, :, None] * vr[:, None]
    memory.cache["encoder_reference_points"] = ref
    return ref


def reference_on_levels(reference: Tensor, valid_ratios: Tensor) -> Tensor:
    """Query references ``[B, Q, 2|4]`` (normalised to the valid image) -> ``[B, Q, L, 2|4]`` on each level's
    padded map: scale by the valid ratio (boxes: centre and size alike)."""
    if reference.shape[-1] == 4:
        valid_ratios = torch.cat((valid_ratios, valid_ratios), -1)
    return reference[:, :, None] * valid_ratios[:, None]


class DeformableEncoderLayer(nn.Module):
    """Deformable self-attention over all levels (query = token + position), then the FFN; post-norm."""

    def __init__(self, dim: int, num_heads: int, num_levels: int, num_points: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(dim, num_heads, num_levels, num_points)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim, dropout)

    def forward(self, x: Tensor, memory: Memory) -> Tensor:
        """x: ``[B, S, d]`` -> ``[B, S, d]``."""
        y = self.self_attn(with_pos(x, memory.pos), encoder_reference_points(memory), x,
                           memory.spatial_shapes, memory.level_start, memory.mask, memory.shapes)
        return self.ffn(self.norm(x + self.dropout(y)))


class DeformableDecoderLayer(nn.Module):
    """Self-attention among queries, deformable cross-attention around each query's reference (a point or a
    box), FFN; post-norm (Deformable-DETR)."""

    def __init__(self, dim: int, num_heads: int, num_levels: int, num_points: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(dim, num_heads, dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn = MSDeformAttn(dim, num_heads, num_levels, num_points)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim, dropout)

    def forward(self, tgt: Tensor, query_pos: Tensor | None, memory: Memory, self_attn_mask: Tensor | None = None,
                reference: Tensor | None = None) -> Tensor:
        """tgt, query_pos: ``[B, Q, d]``; reference: ``[B, Q, 2|4]`` normalised -> ``[B, Q, d]``."""
        if reference is None:
            raise ValueError("a deformable decoder layer needs reference points or boxes")
        qk = with_pos(tgt, query_pos)
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(qk, qk, tgt, attn_mask=self_attn_mask)))
        y = self.cross_attn(with_pos(tgt, query_pos), reference_on_levels(reference, memory.valid_ratios),
                            memory.tokens, memory.spatial_shapes, memory.level_start, memory.mask, memory.shapes)
        return self.ffn(self.norm2(tgt + self.dropout2(y)))
