"""Decoder layer types and the decoder stack.

Every decoder layer has one call signature, ``layer(content [B, Q, d], query_pos [B, Q, d] | None, memory,
self_attn_mask [Q, Q] | None, reference [B, Q, 2|4] | None) -> [B, Q, d]`` (DETR's, Deformable-DETR's and
SAM-DETR's layers alike), so one :class:`Decoder` runs every family. Plug-ins that change how a layer reads the
memory (the Semantics Aligner, a :class:`Modulation` such as SMCA) are passed to the layer rather than written
into it. The stack owns what happens between layers: the memory each layer reads (SAM-DETR++'s coarse-to-fine
view), reference refinement and per-layer positional queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

import torch
from torch import Tensor, nn

from ..boxes import apply_box_delta
from .attention import MultiheadAttention
from .layers import FeedForward, clones, run_layer, with_pos
from .memory import Memory
from .queries import Queries

if TYPE_CHECKING:  # pragma: no cover
    from .plugins.semantic_aligner import AlignedQueries


class Modulation(Protocol):
    """An additive bias on cross-attention logits (SMCA's Gaussian): ``(query [B, Q, d], memory (one level),
    aligned) -> [B, heads, Q, S]``. ``aligned`` is the Semantics Aligner's output in a SAM-DETR layer (its
    keypoints centre the Gaussians) and None in a plain cross-attention layer (the query predicts them)."""

    def __call__(self, query: Tensor, memory: Memory, aligned: "AlignedQueries | None") -> Tensor: ...


class CrossAttentionDecoderLayer(nn.Module):
    """DETR's decoder layer (Carion et al. 2020, sec 3.2): self-attention among queries, cross-attention to
    the memory (query position added to queries, sine position to keys), FFN; post-norm by default.

    modulation: optional :class:`Modulation` of the cross-attention logits (SMCA-DETR's Gaussian,
    ``plugins/smca.py``)."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float, pre_norm: bool = False,
                 modulation: Modulation | None = None) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(dim, num_heads, dropout)
        self.cross_attn = MultiheadAttention(dim, num_heads, dropout)
        self.modulation = modulation
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim, dropout, pre_norm)
        self.pre_norm = pre_norm

    def forward(
        self, tgt: Tensor, query_pos: Tensor | None, memory: Memory, self_attn_mask: Tensor | None = None,
        reference: Tensor | None = None,
    ) -> Tensor:
        """tgt, query_pos: ``[B, Q, d]`` -> ``[B, Q, d]``; ``reference`` is not used by global attention."""
        y = self.norm1(tgt) if self.pre_norm else tgt
        qk = with_pos(y, query_pos)
        y = self.self_attn(qk, qk, y, attn_mask=self_attn_mask)
        tgt = tgt + self.dropout1(y)
        if not self.pre_norm:
            tgt = self.norm1(tgt)
        y = self.norm2(tgt) if self.pre_norm else tgt
        q = with_pos(y, query_pos)
        y = self.cross_attn(
            q, with_pos(memory.tokens, memory.pos), memory.tokens, key_padding_mask=memory.mask,
            attn_bias=None if self.modulation is None else self.modulation(q, memory, None),
        )
        tgt = tgt + self.dropout2(y)
        if not self.pre_norm:
            tgt = self.norm2(tgt)
        return self.ffn(tgt)


@dataclass
class DecoderOutput:
    """hidden: ``[L, B, Q, d]`` every layer's (normed) output; references: per layer ``[B, Q, 2|4]``, the
    reference that layer's prediction refines (normalised cxcy or cxcywh; a 2-d first reference is followed
    by 4-d refined boxes), or None for decoders without references."""

    hidden: Tensor
    references: list[Tensor] | None = None


# (layer index, hidden [B, Q, d]) -> box delta [B, Q, 4] in logit space: the head's box branch.
BoxDelta = Callable[[int, Tensor], Tensor]
# memory -> the memory each layer reads, one per layer (SAM-DETR++'s coarse-to-fine levels, plugins/coarse_to_fine.py)
MemoryView = Callable[[Memory], list[Memory]]


class Decoder(nn.Module):
    """A stack of decoder layers returning every layer's output.

    final_norm: a LayerNorm shared by all layers' outputs before the heads (DETR); Deformable-DETR has none.
    box_refine: the head's box branch; when given, each layer's refined box (detached) becomes the next
        layer's reference (Deformable-DETR "iterative bounding box refinement", DAB, DINO).
    query_pos: a module computing each layer's positional query from its reference box and content
        (DAB-DETR's anchor embedding); None keeps ``queries.pos`` fixed for all layers.
    look_forward_twice: DINO sec 3.5: the reference a layer's prediction refines keeps the gradient into the
        previous layer's refinement, while the reference the next layer samples around is detached.
    memory_view: the memory each layer reads (:data:`MemoryView`); None: every layer reads all of it.
    checkpoint_layers: recompute each layer in the backward pass instead of storing its activations
        (``set_activation_checkpointing``; off by default).
    """

    def __init__(self, layer: nn.Module, num_layers: int, dim: int, final_norm: bool = True,
                 box_refine: BoxDelta | None = None, query_pos: nn.Module | None = None,
                 look_forward_twice: bool = False, memory_view: nn.Module | None = None) -> None:
        super().__init__()
        self.layers = clones(layer, num_layers)
        self.norm = nn.LayerNorm(dim) if final_norm else nn.Identity()
        self.box_refine = box_refine
        self.query_pos = query_pos
        self.look_forward_twice = look_forward_twice
        self.memory_view = memory_view
        self.checkpoint_layers = False

    def forward(self, queries: Queries, memory: Memory) -> DecoderOutput:
        x, ref, pos = queries.content, queries.reference, queries.pos
        pred_ref = ref
        hidden, refs = [], []
        views = [memory] * len(self.layers) if self.memory_view is None else self.memory_view(memory)
        for i, (layer, view) in enumerate(zip(self.layers, views)):
            if self.query_pos is not None:
                pos = self.query_pos(ref, x, i, view)
            x = run_layer(layer, self.checkpoint_layers, x, pos, view, queries.self_attn_mask, ref)
            hidden.append(self.norm(x))
            refs.append(pred_ref)
            if self.box_refine is not None and ref is not None:
                refined = apply_box_delta(ref, self.box_refine(i, x))
                ref = refined.detach()
                pred_ref = refined if self.look_forward_twice else ref
        return DecoderOutput(hidden=torch.stack(hidden), references=None if ref is None else refs)
