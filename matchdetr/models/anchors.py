"""DAB-DETR's dynamic anchor boxes (Liu et al. 2022): queries are learnable 4-d anchors, and every decoder
layer derives its positional query from the current (refined) anchor.

Used by DAB-Deformable-DETR and, with query selection and denoising, by DINO.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..structures import Target
from .deformable import reference_on_levels
from .layers import MLP
from .memory import Memory
from .position import sine_embed
from .queries import Queries


class AnchorQueries(nn.Module):
    """Learnable content queries and learnable anchors ``sigmoid(refpoint_embed)`` (cx, cy, w, h)."""

    def __init__(self, num_queries: int, dim: int) -> None:
        super().__init__()
        self.tgt_embed = nn.Embedding(num_queries, dim)
        self.refpoint_embed = nn.Embedding(num_queries, 4)

    def forward(self, memory: Memory, targets: list[Target] | None = None, head: nn.Module | None = None) -> Queries:
        b = memory.tokens.shape[0]
        content = self.tgt_embed.weight[None].expand(b, -1, -1)
        anchors = self.refpoint_embed.weight.sigmoid()[None].expand(b, -1, -1)
        return Queries(content=content, pos=None, reference=anchors)


class AnchorPosition(nn.Module):
    """The decoder's ``query_pos`` plug-in: ``MLP(sine(anchor))`` (2d -> d -> d), with DAB-Deformable-DETR's
    content-conditioned scale ``MLP(content)`` from the second layer on (``scale_by_content``; DINO drops it).

    The anchor is first scaled by the first level's valid ratio, as the reference the layer samples around.
    """

    def __init__(self, dim: int, scale_by_content: bool = True) -> None:
        super().__init__()
        self.dim = dim
        self.ref_point_head = MLP(2 * dim, dim, dim, 2)
        self.query_scale = MLP(dim, dim, dim, 2) if scale_by_content else None

    def forward(self, reference: Tensor, content: Tensor, layer: int, memory: Memory) -> Tensor:
        """reference ``[B, Q, 4]``, content ``[B, Q, d]`` -> positional query ``[B, Q, d]``."""
        on_map = reference_on_levels(reference, memory.valid_ratios)[:, :, 0]
        pos = self.ref_point_head(sine_embed(on_map, self.dim // 2))
        if self.query_scale is not None and layer > 0:
            pos = pos * self.query_scale(content)
        return pos
