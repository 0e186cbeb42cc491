"""The two attentions of the SAM-DETR decoder layer (SAM-DETR++ sec 4.1-4.2, fig. 2a).

``ConditionalSelfAttention``: Conditional-DETR-style self-attention among queries, where content and position
are projected separately and summed, ``q = Wqc tgt + Wqp PE``, ``k = Wkc tgt + Wkp PE``, ``v = Wv tgt``.

``PerHeadQueryCrossAttention``: cross-attention whose query differs per head. The Semantics Aligner gives each
head ``h`` its own content ``Q_h`` (the feature of keypoint ``h``) and position ``P_h`` (its sine embedding),
both full ``d``-dimensional; ``q_h = Lin(Q_h) + MLP(P_h)`` with the projections shared across heads, the
key ``k = Lin(mem) + MLP(pos)`` is the same full ``d``-dim vector for every head, and the value is split
into ``d / M`` channels per head as usual. Each head's logits are ``q_h . k / sqrt(d)``.

Both take an additive ``attn_bias`` (SMCA's Gaussian) besides boolean masks, and use
``F.scaled_dot_product_attention``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .attention import attention_bias
from .layers import MLP


class ConditionalSelfAttention(nn.Module):
    """Self-attention among queries with separate content / position projections (five d x d Linear + the
    output projection)."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.q_content, self.q_pos = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.k_content, self.k_pos = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, tgt: Tensor, pos: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """tgt, pos: ``[B, N, d]``; attn_mask ``[N, N]`` bool (True = may not attend) -> ``[B, N, d]``."""
        b, n, d = tgt.shape
        heads = lambda x: x.view(b, n, self.num_heads, -1).transpose(1, 2)  # noqa: E731
        q = heads(self.q_content(tgt) + self.q_pos(pos))
        k = heads(self.k_content(tgt) + self.k_pos(pos))
        v = heads(self.v_proj(tgt))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_bias(None, attn_mask, None, q.dtype),
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class PerHeadQueryCrossAttention(nn.Module):
    """Cross-attention from per-head queries ``[B, N, M, d]`` to the memory ``[B, S, d]`` (module docstring)."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.q_content, self.k_content, self.v_proj = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.q_pos, self.k_pos = MLP(dim, dim, dim, 2), MLP(dim, dim, dim, 2)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, content: Tensor, pos: Tensor, memory: Tensor, memory_pos: Tensor,
                key_padding_mask: Tensor | None = None, attn_bias: Tensor | None = None) -> Tensor:
        """content, pos: ``[B, N, M, d]`` per-head queries; memory, memory_pos: ``[B, S, d]``;
        key_padding_mask ``[B, S]`` True on padding; attn_bias ``[B, M, N, S]`` -> ``[B, N, d]``."""
        b, n, m, d = content.shape
        if m != self.num_heads:
            raise ValueError(f"got {m} per-head queries for {self.num_heads} heads")
        q = (self.q_content(content) + self.q_pos(pos)).transpose(1, 2)  # [B, M, N, d]
        k = (self.k_content(memory) + self.k_pos(memory_pos))[:, None].expand(-1, m, -1, -1)  # [B, M, S, d]
        v = self.v_proj(memory).view(b, -1, m, d // m).transpose(1, 2)  # [B, M, S, d/M]
        # the default scale 1/sqrt(q.shape[-1]) is 1/sqrt(d): each head's query is the full d-dim vector
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_bias(key_padding_mask, None, attn_bias, q.dtype),
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))
