"""Decoder queries and the learned-query initialiser of DETR.

Query initialisers (learned embeddings, reference points and reference boxes here; anchor boxes, two-stage
selection and denoising as plug-ins) are called ``(memory, targets, head)`` (the detector's head: the two-stage
selectors score the encoder's proposals with its proposal entry) and all return a :class:`Queries`, so the
decoder runs the same loop whatever made its queries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import torch
from torch import Tensor, nn

from ..structures import QuerySpan, Supervised, Target
from .memory import Memory


@dataclass
class Queries:
    """What the decoder starts from.

    content: ``[B, Q, d]`` content queries (DETR: zeros).
    pos: ``[B, Q, d]`` positional queries, or None where a decoder derives them from ``reference``.
    reference: ``[B, Q, 4]`` normalised cxcywh reference boxes, or None (DETR has none).
    self_attn_mask: ``[Q, Q]`` bool, True where query i may NOT attend to query j (denoising groups).
    before, after: the spans training-time plug-ins put before the matching queries (denoising groups) and
        after them (H-DETR's one-to-many branch), with how each is supervised; the detector returns the matching
        queries and turns each span into its own prediction sets (``DetectorOutput.from_layers``).
    proposals: prediction sets made before the decoder (the encoder's proposals, Mask-DINO's initial
        prediction), supervised as they are.
    """

    content: Tensor
    pos: Tensor | None = None
    reference: Tensor | None = None
    self_attn_mask: Tensor | None = None
    before: list[QuerySpan] = field(default_factory=list)
    after: list[QuerySpan] = field(default_factory=list)
    proposals: list[Supervised] = field(default_factory=list)


class LearnedQueries(nn.Module):
    """DETR's object queries: ``num_queries`` learned positional embeddings, content starts at zero."""

    def __init__(self, num_queries: int, dim: int) -> None:
        super().__init__()
        self.query_embed = nn.Embedding(num_queries, dim)

    def forward(self, memory: Memory, targets: list[Target] | None = None, head: nn.Module | None = None) -> Queries:
        b = memory.tokens.shape[0]
        pos = self.query_embed.weight[None].expand(b, -1, -1)
        return Queries(content=torch.zeros_like(pos), pos=pos)


class ReferencePointQueries(nn.Module):
    """Deformable-DETR's queries: one learned ``2d`` embedding per query, split into a positional half and a
    content half; the reference point is ``sigmoid(Linear(pos))`` (Deformable-DETR sec 4.1)."""

    def __init__(self, num_queries: int, dim: int) -> None:
        super().__init__()
        self.query_embed = nn.Embedding(num_queries, 2 * dim)
        self.reference_points = nn.Linear(dim, 2)
        nn.init.xavier_uniform_(self.reference_points.weight, gain=1.0)
        nn.init.zeros_(self.reference_points.bias)

    def forward(self, memory: Memory, targets: list[Target] | None = None, head: nn.Module | None = None) -> Queries:
        b, d = memory.tokens.shape[0], self.reference_points.in_features
        pos, content = self.query_embed.weight[None].expand(b, -1, -1).split(d, dim=-1)
        return Queries(content=content, pos=pos, reference=self.reference_points(pos).sigmoid())


class ReferenceBoxQueries(nn.Module):
    """SAM-DETR's queries (sec 4.1): content starts at zero, each query has a learnable reference box
    ``sigmoid(embedding)`` (cx, cy, w, h) instead of a learned positional embedding."""

    def __init__(self, num_queries: int, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.query_embed = nn.Embedding(num_queries, 4)

    def forward(self, memory: Memory, targets: list[Target] | None = None, head: nn.Module | None = None) -> Queries:
        b = memory.tokens.shape[0]
        reference = self.query_embed.weight.sigmoid()[None].expand(b, -1, -1)
        content = memory.tokens.new_zeros(b, reference.shape[1], self.dim)
        return Queries(content=content, pos=None, reference=reference)
