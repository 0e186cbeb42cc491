"""SAM-DETR's decoder (Zhang et al. CVPR 2022; SAM-DETR++ sec 4.1-4.3): learnable reference boxes, a decoder
layer with the Semantics Aligner (passed in) ahead of a per-head-query cross-attention, and the coarse-to-fine
schedule of SAM-DETR++ that gives each layer one feature level of the memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..boxes import apply_box_delta
from ..structures import Target
from .decoders import BoxDelta, DecoderOutput
from .layers import FeedForward, clones
from .memory import Memory
from .plugins.semantic_aligner import SemanticAligner
from .position import sine_embed
from .queries import Queries
from .sam_attention import ConditionalSelfAttention, PerHeadQueryCrossAttention


class ReferenceBoxQueries(nn.Module):
    """SAM-DETR's queries (sec 4.1): content starts at zero, each query has a learnable reference box
    ``sigmoid(embedding)`` (cx, cy, w, h) instead of a learned positional embedding."""

    def __init__(self, num_queries: int, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.query_embed = nn.Embedding(num_queries, 4)

    def forward(self, memory: Memory, targets: list[Target] | None = None) -> Queries:
        b = memory.tokens.shape[0]
        reference = self.query_embed.weight.sigmoid()[None].expand(b, -1, -1)
        content = memory.tokens.new_zeros(b, reference.shape[1], self.dim)
        return Queries(content=content, pos=None, reference=reference)


@dataclass
class LevelView:
    """One feature level of the memory as a decoder layer reads it: tokens/pos ``[B, S_l, d]``, mask
    ``[B, S_l]``, the token map ``[B, d, h, w]`` (no positions), its ``(h, w)`` and valid ratio ``[B, 2]``."""

    tokens: Tensor
    pos: Tensor
    mask: Tensor
    feature_map: Tensor
    shape: tuple[int, int]
    valid_ratio: Tensor

    @classmethod
    def of(cls, memory: Memory, level: int) -> "LevelView":
        feature_map, mask, pos = memory.level(level)
        return cls(tokens=feature_map.flatten(2).transpose(1, 2), pos=pos.flatten(2).transpose(1, 2),
                   mask=mask.flatten(1), feature_map=feature_map, shape=memory.shapes[level],
                   valid_ratio=memory.valid_ratios[:, level])


class SamDecoderLayer(nn.Module):
    """Conditional self-attention -> add & norm -> Semantics Aligner -> per-head cross-attention (with an
    optional logit modulation, e.g. SMCA) -> add & norm -> FFN -> add & norm (post-norm, spec sec 1)."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float, aligner: SemanticAligner,
                 modulation: nn.Module | None = None) -> None:
        super().__init__()
        self.self_attn = ConditionalSelfAttention(dim, num_heads, dropout)
        self.dropout1, self.norm1 = nn.Dropout(dropout), nn.LayerNorm(dim)
        self.aligner = aligner
        self.modulation = modulation
        self.cross_attn = PerHeadQueryCrossAttention(dim, num_heads, dropout)
        self.dropout2, self.norm2 = nn.Dropout(dropout), nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim, dropout)

    def forward(self, tgt: Tensor, reference: Tensor, level: LevelView, self_attn_mask: Tensor | None = None) -> Tensor:
        """tgt: ``[B, N, d]``; reference: ``[B, N, 4]`` normalised cxcywh -> ``[B, N, d]``."""
        pos = sine_embed(reference[..., :2], tgt.shape[-1] // 2)  # position of the box centre
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(tgt, pos, self_attn_mask)))
        aligned = self.aligner(tgt, reference, level.feature_map, level.valid_ratio)
        bias = None if self.modulation is None else self.modulation(aligned, level.feature_map[0, 0], level.valid_ratio)
        y = self.cross_attn(aligned.content, aligned.pos, level.tokens, level.pos, level.mask, bias)
        return self.ffn(self.norm2(tgt + self.dropout2(y)))


def coarse_to_fine(num_layers: int, num_levels: int) -> list[int]:
    """Memory level read by each layer, coarsest first in equal runs (sec 4.3): 6 layers over levels
    (C3, C4, C5) = (0, 1, 2) -> [2, 2, 1, 1, 0, 0]; a single level -> all 0."""
    return [num_levels - 1 - (i * num_levels) // num_layers for i in range(num_layers)]


class SamDecoder(nn.Module):
    """A stack of SAM decoder layers with reference-box refinement and no final norm (as released).

    Layer 0 reads ``queries.reference``; each layer's box head (``box_refine``, the head's box branch) gives a
    delta in inverse-sigmoid space and the refined box, detached, is the next layer's reference. Layer ``i``
    reads memory level ``levels[i]`` (:func:`coarse_to_fine`).
    """

    def __init__(self, layer: SamDecoderLayer, num_layers: int, box_refine: BoxDelta, levels: list[int]) -> None:
        super().__init__()
        if len(levels) != num_layers:
            raise ValueError(f"{num_layers} layers but {len(levels)} levels in the schedule")
        self.layers = clones(layer, num_layers)
        self.box_refine = box_refine
        self.levels = levels

    def forward(self, queries: Queries, memory: Memory) -> DecoderOutput:
        if queries.reference is None:
            raise ValueError("the SAM decoder needs reference boxes")
        if max(self.levels) >= len(memory.shapes):
            raise ValueError(f"decoder reads level {max(self.levels)} but the memory has {len(memory.shapes)}")
        views = {lvl: LevelView.of(memory, lvl) for lvl in sorted(set(self.levels))}
        x, ref = queries.content, queries.reference
        hidden, refs = [], []
        for i, layer in enumerate(self.layers):
            x = layer(x, ref, views[self.levels[i]], queries.self_attn_mask)
            hidden.append(x)
            refs.append(ref)
            ref = apply_box_delta(ref, self.box_refine(i, x)).detach()
        return DecoderOutput(hidden=torch.stack(hidden), references=refs)
