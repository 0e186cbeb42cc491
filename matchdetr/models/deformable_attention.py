"""Multi-scale deformable attention module (Deformable-DETR, Zhu et al. 2021, sec. 4.1, eq. 3).

Each query predicts, per head, ``num_points`` sampling offsets on each of ``num_levels`` feature maps around its
reference point and one attention weight per sample (softmax over levels x points); the op in
``matchdetr.ops.ms_deform_attn`` interpolates and sums. Parameter names and initialisation are those of the
original release and of HF transformers' ``DeformableDetrMultiscaleDeformableAttention`` so weights map 1:1.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from matchdetr.ops.ms_deform_attn import ms_deform_attn


class MSDeformAttn(nn.Module):
    def __init__(self, dim: int = 256, num_heads: int = 8, num_levels: int = 4, num_points: int = 4) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.num_levels, self.num_points = dim, num_heads, num_levels, num_points
        self.sampling_offsets = nn.Linear(dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(dim, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # Offsets start as a fixed pattern: head m looks along direction 2*pi*m/heads (scaled so the larger
        # coordinate is 1), point k at distance k+1, identical on every level; the query only learns to bend it.
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.num_heads, 1, 1, 2)
        grid = grid.repeat(1, self.num_levels, self.num_points, 1)
        grid = grid * torch.arange(1, self.num_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)  # uniform attention over all samples at start
        nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(self, query: Tensor, reference_points: Tensor, value: Tensor, spatial_shapes: Tensor,
                level_start: Tensor, value_padding_mask: Tensor | None = None,
                level_shapes: list[tuple[int, int]] | None = None) -> Tensor:
        """Attend each query to ``num_levels x num_points`` samples per head.

        query: ``[B, Q, d]``, position embedding already added by the caller.
        reference_points: ``[B, Q, L, 2]`` normalised (x, y) points, or ``[B, Q, L, 4]`` normalised
        (cx, cy, w, h) boxes, in [0, 1] of each level's valid map.
        value: ``[B, S, d]``, the L flattened levels concatenated (S = sum H_l W_l).
        spatial_shapes: ``[L, 2]`` int64 (H_l, W_l). level_start: ``[L]`` int64 offset of each level in S.
        value_padding_mask: ``[B, S]`` bool, True on padding; those values are zeroed before sampling.
        level_shapes: the same sizes as Python ints (``Memory.shapes``): the op then reads nothing back from
        the device.
        Returns ``[B, Q, d]``. Raises ValueError if S != sum H_l W_l (checked in the op).
        """
        coords = reference_points.shape[-1]
        if coords not in (2, 4):
            raise ValueError(f"reference_points must end in 2 (x, y) or 4 (cx, cy, w, h), got {coords}")
        b, q, _ = query.shape
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        value = self.value_proj(value)
        if value_padding_mask is not None:
            value = value.masked_fill(value_padding_mask[..., None], 0.0)
        value = value.view(b, value.shape[1], heads, self.dim // heads)
        offsets = self.sampling_offsets(query).view(b, q, heads, levels, points, 2)
        weights = self.attention_weights(query).view(b, q, heads, levels * points).softmax(-1)
        weights = weights.view(b, q, heads, levels, points)
        ref = reference_points[:, :, None, :, None, :]  # broadcast over heads and points
        if coords == 2:
            # offsets are in pixels of each level: normalise by (W_l, H_l)
            normaliser = torch.stack([spatial_shapes[:, 1], spatial_shapes[:, 0]], -1).to(offsets.dtype)
            locations = ref + offsets / normaliser[:, None, :]
        else:
            # box references (iterative refinement, paper app. A.4): offsets scale with the box's half size; the
            # extra 1/num_points is the official code's
            locations = ref[..., :2] + offsets / points * ref[..., 2:] * 0.5
        if level_shapes is not None:
            out = ms_deform_attn(value, level_shapes, None, locations, weights)
        else:
            out = ms_deform_attn(value, spatial_shapes, level_start, locations, weights)
        return self.output_proj(out)
