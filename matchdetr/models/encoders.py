"""Encoder layer types and the encoder stack.

Every encoder layer maps ``x [B, S, d]`` to ``[B, S, d]`` and reads what else it needs (positions, padding,
level shapes) from the :class:`~matchdetr.models.memory.Memory` it is given, so single-scale and deformable
layers stack the same way.
"""

from __future__ import annotations

from torch import Tensor, nn

from .attention import MultiheadAttention
from .layers import FeedForward, clones, run_layer, with_pos
from .memory import Memory


class SelfAttentionEncoderLayer(nn.Module):
    """DETR's encoder layer (Carion et al. 2020, sec 3.2): global self-attention with the sine position added
    to queries and keys only, then the FFN; post-norm by default."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float, pre_norm: bool = False) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(dim, num_heads, dropout)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim, dropout, pre_norm)
        self.pre_norm = pre_norm

    def forward(self, x: Tensor, memory: Memory) -> Tensor:
        """x: ``[B, S, d]`` -> ``[B, S, d]``."""
        y = self.norm(x) if self.pre_norm else x
        qk = with_pos(y, memory.pos)
        y = self.self_attn(qk, qk, y, key_padding_mask=memory.mask)
        x = x + self.dropout(y)
        if not self.pre_norm:
            x = self.norm(x)
        return self.ffn(x)


class Encoder(nn.Module):
    """A stack of identical encoder layers.

    keep_layers: store ``[x0, x1, ..., xL]`` in ``Memory.layers`` (x0 = the encoder input without positional
    embedding), which memory fusion and the unstable score read.
    checkpoint_layers: recompute each layer in the backward pass instead of storing its activations
        (``set_activation_checkpointing``; off by default).
    """

    def __init__(self, layer: nn.Module, num_layers: int, keep_layers: bool = False) -> None:
        super().__init__()
        self.layers = clones(layer, num_layers)
        self.keep_layers = keep_layers
        self.checkpoint_layers = False

    def forward(self, memory: Memory) -> Memory:
        x = memory.tokens
        kept = [x] if self.keep_layers else []
        for layer in self.layers:
            x = run_layer(layer, self.checkpoint_layers, x, memory)
            if self.keep_layers:
                kept.append(x)
        out = memory.with_tokens(x)
        out.layers = kept
        return out
