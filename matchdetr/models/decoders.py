"""Decoder layer types and the decoder stack.

A decoder layer maps ``content [B, Q, d]`` to ``[B, Q, d]`` given the query positions, the memory and the
self-attention mask; plug-ins that change how a layer reads the memory (the Semantics Aligner, SMCA) are
passed to the layer as arguments rather than written into it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .attention import MultiheadAttention
from .layers import FeedForward, clones, with_pos
from .memory import Memory
from .queries import Queries


class CrossAttentionDecoderLayer(nn.Module):
    """DETR's decoder layer (Carion et al. 2020, sec 3.2): self-attention among queries, cross-attention to
    the memory (query position added to queries, sine position to keys), FFN; post-norm by default."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float, pre_norm: bool = False) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(dim, num_heads, dropout)
        self.cross_attn = MultiheadAttention(dim, num_heads, dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim, dropout, pre_norm)
        self.pre_norm = pre_norm

    def forward(
        self, tgt: Tensor, query_pos: Tensor | None, memory: Memory, self_attn_mask: Tensor | None = None
    ) -> Tensor:
        """tgt, query_pos: ``[B, Q, d]`` -> ``[B, Q, d]``."""
        y = self.norm1(tgt) if self.pre_norm else tgt
        qk = with_pos(y, query_pos)
        y = self.self_attn(qk, qk, y, attn_mask=self_attn_mask)
        tgt = tgt + self.dropout1(y)
        if not self.pre_norm:
            tgt = self.norm1(tgt)
        y = self.norm2(tgt) if self.pre_norm else tgt
        y = self.cross_attn(
            with_pos(y, query_pos), with_pos(memory.tokens, memory.pos), memory.tokens,
            key_padding_mask=memory.mask,
        )
        tgt = tgt + self.dropout2(y)
        if not self.pre_norm:
            tgt = self.norm2(tgt)
        return self.ffn(tgt)


@dataclass
class DecoderOutput:
    """hidden: ``[L, B, Q, d]`` every layer's (normed) output; references: ``[L, B, Q, 4]`` the reference box
    each layer's prediction refines, or None for decoders without references."""

    hidden: Tensor
    references: Tensor | None = None


class Decoder(nn.Module):
    """A stack of decoder layers returning every layer's output, each passed through a shared final
    LayerNorm as in DETR (its decoder normalises intermediate outputs before the heads)."""

    def __init__(self, layer: nn.Module, num_layers: int, dim: int, final_norm: bool = True) -> None:
        super().__init__()
        self.layers = clones(layer, num_layers)
        self.norm = nn.LayerNorm(dim) if final_norm else nn.Identity()

    def forward(self, queries: Queries, memory: Memory) -> DecoderOutput:
        x = queries.content
        hidden = []
        for layer in self.layers:
            x = layer(x, queries.pos, memory, queries.self_attn_mask)
            hidden.append(self.norm(x))
        return DecoderOutput(hidden=torch.stack(hidden))
