"""Multi-scale deformable attention sampling (Deformable-DETR, Zhu et al. 2021, eq. 2-3), in pure PyTorch.

For every query q and head m the op returns ``sum_l sum_k A[q,m,l,k] * V_l[m](p[q,m,l,k])``: the value map of
level l (head m's channels) bilinearly interpolated at the sampling location p, weighted by the attention
weight A (already softmaxed over levels x points by the caller). Locations are normalised (x, y) in [0, 1] of
each level's map, with pixel i covering [i/W, (i+1)/W) so its centre is (i + 0.5)/W, and values outside the map
are zero: exactly ``F.grid_sample(mode="bilinear", padding_mode="zeros", align_corners=False)`` on the grid
``2 * p - 1``, which is also the semantics of the original CUDA kernel and of HF transformers.

``ms_deform_attn`` is the fast path: one ``grid_sample`` per level over all (batch x head) maps at once, the
weighted sum over points accumulated with ``addcmul`` (no [B*heads, D, L, P, Q] stack, whose allocation costs
more than the interpolation on CPU), and a hand-written backward that reuses ``grid_sampler_2d_backward`` and
contracts over channels without materialising a product tensor. ``ms_deform_attn_naive`` is the per-sample
Python loop used as the reference in the tests.

Dtypes: float16/bfloat16 inputs are upcast to float32 for the computation (a bf16 sampling location is only
good to ~1/256 of the map, and CPU kernels are faster in float32) and the result is cast back to
``value.dtype``; float32/float64 are computed as they are. Works on any device and under autograd (first
order). When traced (ONNX export) the plain differentiable-op path is used; it exports with opset >= 16
(``GridSample``). Under tracing the level sizes stay traced 0-dim tensors (``_level_layout``) instead of Python
ints, so the exported graph computes the level slices from the input's size: one export serves any image size
(``matchdetr.export``). Eager calls never take that branch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from typing import Sequence

from torch import Tensor


def _level_layout(value: Tensor, spatial_shapes: Tensor | Sequence[tuple[int, int]], level_start: Tensor | None,
                  sampling_locations: Tensor) -> tuple[list[tuple[int, int]], list[int]]:
    """Level sizes and start offsets as Python ints, after checking they agree with the tensors.

    Given as Python ints (``Memory.shapes``), nothing is read back from the device: on a GPU a ``.tolist()``
    per attention call would stall the host every layer."""
    if _tracing():
        return _traced_layout(spatial_shapes, level_start)
    if isinstance(spatial_shapes, Tensor):
        hw = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    else:
        hw = [(int(h), int(w)) for h, w in spatial_shapes]
    if isinstance(level_start, Tensor):
        starts = [int(s) for s in level_start.tolist()]
    else:
        starts = [sum(h * w for h, w in hw[:i]) for i in range(len(hw))]
    if len(hw) != len(starts) or len(hw) != sampling_locations.shape[3]:
        raise ValueError(f"levels disagree: spatial_shapes {len(hw)}, level_start {len(starts)}, "
                         f"sampling_locations {sampling_locations.shape[3]}")
    if value.shape[1] != sum(h * w for h, w in hw):
        raise ValueError(f"value has S={value.shape[1]} positions but sum(H_l*W_l)={sum(h * w for h, w in hw)}")
    return hw, starts


def _tracing() -> bool:
    # The TorchScript ONNX exporter traces, so this covers export; torch.onnx.is_in_onnx_export() would add ~3 us
    # to every eager call.
    return torch.jit.is_tracing()


def _traced_layout(spatial_shapes: Tensor | Sequence[tuple[Tensor, Tensor]],
                   level_start: Tensor | None) -> tuple[list[tuple[Tensor, Tensor]], list[Tensor]]:
    """Export mode: sizes and offsets as traced 0-dim tensors, so the graph follows the input's size.

    ``int()`` here would freeze the traced sizes into constants (the exported model would only accept the
    sample's image size), and the eager checks in ``_level_layout`` would do the same, so they are skipped."""
    if isinstance(spatial_shapes, Tensor):
        hw = [(spatial_shapes[i, 0], spatial_shapes[i, 1]) for i in range(spatial_shapes.shape[0])]
    else:
        hw = [(h, w) for h, w in spatial_shapes]
    if isinstance(level_start, Tensor):
        starts = [level_start[i] for i in range(len(hw))]
    else:
        starts, acc = [], 0
        for h, w in hw:
            starts.append(acc)
            acc = acc + h * w
    return hw, starts


def _sample_and_weight(v: Tensor, grids: Tensor, weights: Tensor, hw: list[tuple[int, int]], starts: list[int],
                       keep_samples: bool = False) -> tuple[Tensor, list[Tensor]]:
    """Core of the fast path on head-major tensors.

    v: ``[N, D, S]`` (N = batch * heads); grids: ``[L, N, P, Q, 2]`` in grid_sample's [-1, 1] convention;
    weights: ``[L, N, 1, P, Q]``. Returns ``[N, D, Q]`` and, if asked, the per-level samples ``[N, D, P, Q]``.
    """
    n, d, _ = v.shape
    out, samples = None, []
    for level, ((h, w), start) in enumerate(zip(hw, starts)):
        level_map = v[:, :, start:start + h * w].reshape(n, d, h, w)
        s = F.grid_sample(level_map, grids[level], mode="bilinear", padding_mode="zeros", align_corners=False)
        if keep_samples:
            samples.append(s)
        for p in range(s.shape[2]):  # accumulate point by point: no [N, D, P, Q] product tensor
            term_s, term_w = s[:, :, p], weights[level, :, :, p]
            out = term_s * term_w if out is None else torch.addcmul(out, term_s, term_w)
    return out, samples


class _SampleAndWeight(torch.autograd.Function):
    """``_sample_and_weight`` with a backward that avoids the large temporaries autograd would create."""

    @staticmethod
    def forward(ctx, v: Tensor, grids: Tensor, weights: Tensor, hw: list[tuple[int, int]],
                starts: list[int]) -> Tensor:
        need_weights_grad = ctx.needs_input_grad[2]
        out, samples = _sample_and_weight(v, grids, weights, hw, starts, keep_samples=need_weights_grad)
        ctx.hw, ctx.starts = hw, starts
        ctx.save_for_backward(v, grids, weights, *samples)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        v, grids, weights, *samples = ctx.saved_tensors
        need_v, need_grid, need_w = ctx.needs_input_grad[:3]
        n, d, _ = v.shape
        grad_v = torch.zeros_like(v) if need_v else None
        grad_grid = torch.empty_like(grids) if need_grid else None
        grad_w = torch.empty_like(weights) if need_w else None
        g = grad_out.unsqueeze(2)  # [N, D, 1, Q]
        for level, ((h, w), start) in enumerate(zip(ctx.hw, ctx.starts)):
            if need_w:  # dL/dA = <sample, dL/dout> over channels, accumulated channel by channel
                s, acc = samples[level], None
                for c in range(d):
                    acc = s[:, c] * g[:, c] if acc is None else acc.addcmul_(s[:, c], g[:, c])
                grad_w[level, :, 0] = acc
            if need_v or need_grid:
                level_map = v[:, :, start:start + h * w].reshape(n, d, h, w)
                d_map, d_grid = torch.ops.aten.grid_sampler_2d_backward(
                    g * weights[level], level_map, grids[level], 0, 0, False, [need_v, need_grid])
                if need_v:
                    grad_v[:, :, start:start + h * w] += d_map.flatten(2)
                if need_grid:
                    grad_grid[level] = d_grid
        return grad_v, grad_grid, grad_w, None, None


def _needs_autograd(*tensors: Tensor) -> bool:
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export():
        return False  # exporters trace the plain ops; they never run our backward
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def ms_deform_attn(value: Tensor, spatial_shapes: Tensor, level_start: Tensor, sampling_locations: Tensor,
                   attention_weights: Tensor) -> Tensor:
    """Deformable-DETR eq. 2-3 sampling and weighting (the part after the projections).

    value: ``[B, S, heads, head_dim]``, the L levels' maps flattened row-major and concatenated (S = sum H_l W_l).
    spatial_shapes: ``[L, 2]`` int64 (H_l, W_l). level_start: ``[L]`` int64 offset of each level in S.
    sampling_locations: ``[B, Q, heads, L, P, 2]`` normalised (x, y), may lie outside [0, 1] (zero there).
    attention_weights: ``[B, Q, heads, L, P]``, already softmaxed over L*P.
    Returns ``[B, Q, heads * head_dim]`` in ``value.dtype``.
    """
    hw, starts = _level_layout(value, spatial_shapes, level_start, sampling_locations)
    b, _, heads, head_dim = value.shape
    _, q, _, levels, points, _ = sampling_locations.shape
    dtype = torch.promote_types(torch.promote_types(value.dtype, sampling_locations.dtype), attention_weights.dtype)
    if dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32
    # Head-major layouts: grid_sample wants channels-first maps, one batch entry per (image, head).
    v = value.to(dtype).permute(0, 2, 3, 1).reshape(b * heads, head_dim, value.shape[1])
    grids = (2 * sampling_locations.to(dtype) - 1).permute(3, 0, 2, 4, 1, 5).reshape(levels, b * heads, points, q, 2)
    weights = attention_weights.to(dtype).permute(3, 0, 2, 4, 1).reshape(levels, b * heads, 1, points, q)
    if _needs_autograd(v, grids, weights):
        out = _SampleAndWeight.apply(v, grids, weights, hw, starts)
    else:
        out = _sample_and_weight(v, grids, weights, hw, starts)[0]
    return out.view(b, heads * head_dim, q).transpose(1, 2).contiguous().to(value.dtype)


def ms_deform_attn_naive(value: Tensor, spatial_shapes: Tensor, level_start: Tensor, sampling_locations: Tensor,
                         attention_weights: Tensor) -> Tensor:
    """Reference: an explicit loop over (b, q, head, level, point) and the four bilinear corners.

    Same arguments and result as ``ms_deform_attn``; slow, for tests on tiny shapes only. Differentiable
    (corner indices are constants, the corner weights are tensor expressions of the locations).
    """
    hw, starts = _level_layout(value, spatial_shapes, level_start, sampling_locations)
    b_size, _, heads, head_dim = value.shape
    _, q_size, _, levels, points, _ = sampling_locations.shape
    rows = []
    for b in range(b_size):
        for q in range(q_size):
            for m in range(heads):
                acc = value.new_zeros(head_dim)
                for level, ((h, w), start) in enumerate(zip(hw, starts)):
                    for k in range(points):
                        # pixel (i, j) has its centre at ((j + 0.5) / W, (i + 0.5) / H)
                        x = sampling_locations[b, q, m, level, k, 0] * w - 0.5
                        y = sampling_locations[b, q, m, level, k, 1] * h - 0.5
                        x0, y0 = math.floor(x.item()), math.floor(y.item())
                        fx, fy = x - x0, y - y0
                        for yy, wy in ((y0, 1 - fy), (y0 + 1, fy)):
                            for xx, wx in ((x0, 1 - fx), (x0 + 1, fx)):
                                if 0 <= xx < w and 0 <= yy < h:  # zero padding outside the map
                                    corner = value[b, start + yy * w + xx, m]
                                    acc = acc + attention_weights[b, q, m, level, k] * wy * wx * corner
                rows.append(acc)
    return torch.stack(rows).view(b_size, q_size, heads * head_dim)
