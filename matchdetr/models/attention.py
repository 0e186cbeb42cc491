"""Multi-head attention with batch-first tensors and separate q/k/v projections.

Our own module rather than ``nn.MultiheadAttention`` because later plug-ins need what the fused module hides:
SMCA adds a per-head bias to the attention logits and SAM-DETR feeds a different query to every head. The
parameter count equals ``nn.MultiheadAttention``'s (4 d x d weights + 4 d biases). The product runs through
``F.scaled_dot_product_attention`` so it uses the fused kernels where available.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MultiheadAttention(nn.Module):
    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        for lin in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.xavier_uniform_(lin.weight)  # as nn.MultiheadAttention initialises in_proj
            nn.init.zeros_(lin.bias)
        nn.init.zeros_(self.out_proj.bias)

    def _heads(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, -1).transpose(1, 2)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        attn_bias: Tensor | None = None,
    ) -> Tensor:
        """Attend ``query`` to ``key``/``value``.

        query: ``[B, Nq, d]``; key, value: ``[B, Nk, d]``.
        key_padding_mask: ``[B, Nk]`` bool, True where the key is padding (ignored).
        attn_mask: ``[Nq, Nk]`` or ``[B, Nq, Nk]`` bool, True where attention is NOT allowed.
        attn_bias: ``[B, heads, Nq, Nk]`` float added to the logits (e.g. SMCA's Gaussian prior).
        Returns ``[B, Nq, d]``.
        """
        q, k, v = self._heads(self.q_proj(query)), self._heads(self.k_proj(key)), self._heads(self.v_proj(value))
        bias = _additive_mask(key_padding_mask, attn_mask, q.dtype, q.shape[2])
        if attn_bias is not None:
            bias = attn_bias.to(q.dtype) if bias is None else bias + attn_bias.to(q.dtype)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0
        )
        b, _, nq, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, nq, self.embed_dim))


def _additive_mask(
    key_padding_mask: Tensor | None, attn_mask: Tensor | None, dtype: torch.dtype, nq: int
) -> Tensor | None:
    """Combine boolean masks into one additive ``[B|1, 1, Nq, Nk]`` bias (-inf where not allowed).

    A large negative finite value instead of -inf keeps rows whose every key is masked finite (uniform
    attention over padding) rather than NaN, which a fully padded key set could otherwise produce.
    """
    if key_padding_mask is None and attn_mask is None:
        return None
    neg = torch.finfo(dtype).min
    masked = None
    if key_padding_mask is not None:
        masked = key_padding_mask[:, None, None, :]
    if attn_mask is not None:
        am = attn_mask[None, None] if attn_mask.dim() == 2 else attn_mask[:, None]
        masked = am if masked is None else (masked | am)
    zeros = torch.zeros((), dtype=dtype, device=masked.device)
    return torch.where(masked, torch.full((), neg, dtype=dtype, device=masked.device), zeros)
