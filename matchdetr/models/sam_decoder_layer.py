"""SAM-DETR's decoder layer (Zhang et al. CVPR 2022; SAM-DETR++ sec 4.1-4.2, fig. 2a): the Semantics Aligner
(passed in) ahead of a per-head-query cross-attention. It runs in the shared ``decoders.Decoder`` like every
other layer: learnable reference boxes come from ``queries.ReferenceBoxQueries``, the coarse-to-fine level
schedule of SAM-DETR++ from the decoder's memory view (``plugins/coarse_to_fine.py``).
"""

from __future__ import annotations

from torch import Tensor, nn

from .decoders import Modulation
from .layers import FeedForward
from .memory import Memory
from .plugins.semantic_aligner import SemanticAligner
from .position import sine_embed
from .sam_attention import ConditionalSelfAttention, PerHeadQueryCrossAttention


class SamDecoderLayer(nn.Module):
    """Conditional self-attention -> add & norm -> Semantics Aligner -> per-head cross-attention (with an
    optional logit :class:`~matchdetr.models.decoders.Modulation`, e.g. SMCA) -> add & norm -> FFN -> add & norm
    (post-norm, as the release)."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float, aligner: SemanticAligner,
                 modulation: Modulation | None = None) -> None:
        super().__init__()
        self.self_attn = ConditionalSelfAttention(dim, num_heads, dropout)
        self.dropout1, self.norm1 = nn.Dropout(dropout), nn.LayerNorm(dim)
        self.aligner = aligner
        self.modulation = modulation
        self.cross_attn = PerHeadQueryCrossAttention(dim, num_heads, dropout)
        self.dropout2, self.norm2 = nn.Dropout(dropout), nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim, dropout)

    def forward(self, tgt: Tensor, query_pos: Tensor | None, memory: Memory, self_attn_mask: Tensor | None = None,
                reference: Tensor | None = None) -> Tensor:
        """tgt: ``[B, N, d]``; reference: ``[B, N, 4]`` normalised cxcywh; memory: ONE level (the aligner reads
        its map) -> ``[B, N, d]``. ``query_pos`` is not used: the position is the sine embedding of the box
        centre, and each head's the embedding of its keypoint."""
        if reference is None:
            raise ValueError("the SAM-DETR decoder layer needs reference boxes")
        if len(memory.shapes) != 1:
            raise ValueError(f"the SAM-DETR decoder layer reads one memory level, got {len(memory.shapes)}: "
                             "give the decoder a coarse-to-fine memory view")
        pos = sine_embed(reference[..., :2], tgt.shape[-1] // 2)  # position of the box centre
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(tgt, pos, self_attn_mask)))
        aligned = self.aligner(tgt, reference, memory.token_map(0), memory.valid_ratios[:, 0])
        bias = None if self.modulation is None else self.modulation(tgt, memory, aligned)
        y = self.cross_attn(aligned.content, aligned.pos, memory.tokens, memory.pos, memory.mask, bias)
        return self.ffn(self.norm2(tgt + self.dropout2(y)))
