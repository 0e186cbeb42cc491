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
        bias = attention_bias(key_padding_mask, attn_mask, attn_bias, q.dtype)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0
        )
        b, _, nq, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, nq, self.embed_dim))


def attention_bias(key_padding_mask: Tensor | None, attn_mask: Tensor | None, attn_bias: Tensor | None,
                   dtype: torch.dtype) -> Tensor | None:
    """Boolean masks and an additive bias as the one additive ``attn_mask`` SDPA takes.

    key_padding_mask: ``[B, Nk]`` bool, True on padding; attn_mask: ``[Nq, Nk]`` or ``[B, Nq, Nk]`` bool, True
    where attention is NOT allowed; attn_bias: ``[B, heads, Nq, Nk]`` float (e.g. SMCA's Gaussian). Returns a
    bias broadcastable to ``[B, heads, Nq, Nk]``, or None. Blocked entries get the dtype's most negative finite
    value rather than -inf, so a row whose every key is masked stays finite (uniform over padding), not NaN.
    """
    out = None if attn_bias is None else attn_bias.to(dtype)
    masked = None
    if key_padding_mask is not None:
        masked = key_padding_mask[:, None, None, :]
    if attn_mask is not None:
        am = attn_mask[None, None] if attn_mask.dim() == 2 else attn_mask[:, None]
        masked = am if masked is None else (masked | am)
    if masked is not None:
        zeros = torch.zeros((), dtype=dtype, device=masked.device)
        add = torch.where(masked, torch.full((), torch.finfo(dtype).min, dtype=dtype, device=masked.device), zeros)
        out = add if out is None else out + add
    return out
