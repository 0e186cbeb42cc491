"""The textbook formulation of multi-scale deformable attention, as a timing and memory baseline.

One ``grid_sample`` per level, the samples stacked into ``[B*heads, D, Q, L*P]``, multiplied by the attention
weights and summed, under plain autograd: what the original Deformable-DETR repository's PyTorch fallback and
HF transformers' ``MultiScaleDeformableAttention`` do. Same arguments and result as
:func:`~matchdetr.ops.ms_deform_attn.ms_deform_attn` (held equal by the tests); ``ms_deform_attn`` avoids the
stacked tensor and its autograd temporaries, and ``bench gpu`` / ``tests/ops/test_ms_deform_attn.py`` time the two.
``ms_deform_attn_naive`` (the per-sample loop) stays the exactness reference: it is far too slow to time at an
encoder's size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def ms_deform_attn_stacked(value: Tensor, spatial_shapes: Tensor, level_start: Tensor, sampling_locations: Tensor,
                           attention_weights: Tensor) -> Tensor:
    """value ``[B, S, heads, D]``; spatial_shapes ``[L, 2]`` (H_l, W_l); level_start ``[L]`` (unused: the levels
    are contiguous in S); sampling_locations ``[B, Q, heads, L, P, 2]`` normalised (x, y); attention_weights
    ``[B, Q, heads, L, P]``. Returns ``[B, Q, heads * D]``."""
    b, _, heads, d = value.shape
    _, q, _, levels, points, _ = sampling_locations.shape
    hw = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    maps = value.split([h * w for h, w in hw], dim=1)
    samples = [F.grid_sample(m.flatten(2).transpose(1, 2).reshape(b * heads, d, h, w),
                             (2 * sampling_locations[:, :, :, i] - 1).transpose(1, 2).flatten(0, 1),
                             mode="bilinear", padding_mode="zeros", align_corners=False)
               for i, (m, (h, w)) in enumerate(zip(maps, hw))]  # each [B*heads, D, Q, P]
    weights = attention_weights.transpose(1, 2).reshape(b * heads, 1, q, levels * points)
    out = (torch.stack(samples, -2).flatten(-2) * weights).sum(-1).view(b, heads * d, q)
    return out.transpose(1, 2).contiguous()
