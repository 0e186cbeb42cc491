"""Multi-scale deformable attention sampling (Deformable-DETR, Zhu et al. 2021, eq. 2-3), in pure PyTorch.

For every query q and head m the op returns ``sum_l sum_k A[q,m,l,k] * V_l[m](p[q,m,l,k])``: the value map of
level l (head m's channels) bilinearly interpolated at the sampling location p, weighted by the attention
weight A (already softmaxed over levels x points by the caller). Locations are normalised (x, y) in [0, 1] of
each level's map, with pixel i covering [i/W, (i+1)/W) so its centre is (i + 0.5)/W, and values outside the map
are zero: exactly ``F.grid_sample(mode="bilinear", padding_mode="zeros", align_corners=False)`` on the grid
``2 * p - 1``, which is also the semantics of the original CUDA kernel and of HF transformers.

``ms_deform_attn`` is the fast path (CPU and CUDA). The four bilinear corners of every sampling location are
computed once as "taps" (``bilinear_taps``: a row index into each level's value map, zero-padded by one pixel
before and two after so that every corner exists, and the corner's bilinear weight times the attention
weight); the whole weighted sum over levels, points and corners is then one ``embedding_bag`` (sum mode,
per-tap weights), which reads each tap's ``head_dim`` values once and allocates nothing per sample. At the
Deformable-DETR-R50 encoder size (640x640, 8,500 tokens) this forward is 4-6x faster than one
``grid_sample`` per level plus the weighted sum (``docs/benchmarks.md``). The backward (``_TapsAndWeight``)
keeps the taps (8 bytes each) instead of the per-level samples (``4 x head_dim`` bytes per point): the value
and location gradients come from ATen's ``grid_sampler_2d_backward`` level by level, the attention weights'
from a sampled dense-dense product on the taps' sparsity pattern. ``ms_deform_attn_naive`` is the
per-sample Python loop used as the reference in the tests.

Dtypes: float16/bfloat16 inputs are upcast to float32 for the computation (a bf16 sampling location is only
good to ~1/256 of the map, and CPU kernels are faster in float32) and the result is cast back to
``value.dtype``; float32/float64 are computed as they are. Works on any device and under autograd (first
order). When traced (ONNX export, which has no ``EmbeddingBag``) and on devices other than CPU and CUDA, the
``grid_sample`` formulation runs through plain autograd instead; it exports with opset >= 16 (``GridSample``).
Under tracing the level sizes stay traced 0-dim tensors (``_level_layout``) instead of Python ints, so the
exported graph computes the level slices from the input's size: one export serves any image size
(``matchdetr.inference.export``). Eager calls never take that branch.
"""

from __future__ import annotations

import math
import warnings

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


# Each level's value map is padded with zeros, one column / row before and two after, so that every corner a
# location can touch exists and the zero padding of ``grid_sample`` needs no bounds test per corner.
_PAD_LO, _PAD_HI = 1, 2


def padded_layout(hw: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], list[int], int]:
    """The padded maps' sizes, start offsets and total row count (``padded_rows``)."""
    sizes = [(h + _PAD_LO + _PAD_HI, w + _PAD_LO + _PAD_HI) for h, w in hw]
    starts = [sum(h * w for h, w in sizes[:i]) for i in range(len(sizes))]
    return sizes, starts, sum(h * w for h, w in sizes)


def padded_rows(value: Tensor, hw: list[tuple[int, int]], starts: list[int]) -> Tensor:
    """``[B, S, heads, D]`` -> ``[B * heads * S_pad, D]``: every (image, head)'s levels, each zero-padded by
    ``_PAD_LO`` / ``_PAD_HI`` rows and columns, flattened row-major: the rows ``bilinear_taps`` indexes."""
    b, _, heads, d = value.shape
    v = value.permute(0, 2, 1, 3)  # [B, heads, S, D]
    levels = [F.pad(v[:, :, st:st + h * w].reshape(b, heads, h, w, d), (0, 0, _PAD_LO, _PAD_HI, _PAD_LO, _PAD_HI))
              for (h, w), st in zip(hw, starts)]
    return torch.cat([lv.flatten(2, 3) for lv in levels], 2).reshape(-1, d)


def bilinear_taps(sampling_locations: Tensor, hw: list[tuple[int, int]], attention: Tensor | None = None,
                  keep_bilinear: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
    """The four bilinear corners of every sampling location, as rows of ``padded_rows``.

    sampling_locations: ``[B, Q, heads, L, P, 2]`` normalised (x, y); attention (optional):
    ``[B, Q, heads, L, P]``, folded into the weights. Returns ``index`` (int32 when every row number fits, else
    int64) and ``weight``, both ``[B * heads * Q, L * P * 4]``: row ``(b, m, q)`` lists, level by level and
    point by point, the corners (x0,y0), (x1,y0), (x0,y1), (x1,y1) with their bilinear weights; third, with
    ``keep_bilinear``, the bilinear weights without the attention weight (else None).

    Pixel coordinates are ``loc * size - 0.5`` (``grid_sample``, ``align_corners=False``), clamped to
    [-1, size]: a location beyond the map then lands on the zero border with weight 1 on it and 0 on its
    neighbour, so outside the map the result is zero, as with zero padding; inside and within one pixel of the
    border nothing is clamped. Per level, everything is computed per location with Python-number sizes; only
    the two ``torch.stack`` calls that interleave the four corners touch the full tap count (broadcasting over
    a size-4 axis instead ran 5-7x slower).
    """
    b, q, heads, levels, points, _ = sampling_locations.shape
    dev, dtype = sampling_locations.device, sampling_locations.dtype
    psizes, pstarts, ptotal = padded_layout(hw)
    itype = torch.int32 if b * heads * ptotal < 2**31 else torch.int64
    rows = b * heads * q
    # eager: each level's taps are written into their columns of the result (``out=``); dynamo cannot trace a
    # non-contiguous ``out=``, so a compiled graph collects the levels and concatenates (inductor fuses both)
    direct = not torch.compiler.is_compiling()
    keep = keep_bilinear and attention is not None
    index = torch.empty(rows, levels, points, 4, dtype=itype, device=dev) if direct else []
    weight = torch.empty(rows, levels, points, 4, dtype=dtype, device=dev) if direct else []
    bilinear = (torch.empty_like(weight) if direct else []) if keep else None
    # level-major views: each level's arithmetic then has Python-number sizes, the fastest elementwise form
    # (copied once, so that every result below is laid out in its logical order)
    loc = sampling_locations.permute(3, 0, 2, 1, 4, 5).contiguous()  # [L, B, heads, Q, P, 2]
    att = None if attention is None else attention.permute(3, 0, 2, 1, 4).contiguous()  # [L, B, heads, Q, P]
    block = torch.arange(b * heads, device=dev, dtype=itype).view(b, heads, 1, 1) * ptotal
    for level, ((h, w), (_, pw), pstart) in enumerate(zip(hw, psizes, pstarts)):
        # NaN stays NaN through the clamps; its junk integer is clamped to a valid row (its weight is NaN)
        x = (loc[level, ..., 0] * w - 0.5).clamp_(-1.0, float(w))  # [B, heads, Q, P]
        y = (loc[level, ..., 1] * h - 0.5).clamp_(-1.0, float(h))
        x0, y0 = x.floor(), y.floor()
        fx, fy = x.sub_(x0), y.sub_(y0)
        ix = x0.to(itype).clamp_(-1, w).add_(_PAD_LO)
        iy = y0.to(itype).clamp_(-1, h).add_(_PAD_LO)
        base = iy.mul_(pw).add_(ix).add_(block).add_(pstart).view(rows, points)
        # the corners one by one, then one interleaving copy each: broadcasting over a size-4 axis is slow
        _put(index, level, (base, base + 1, base + pw, base + (pw + 1)), rows)
        wx0, wy0, wy1 = 1 - fx, 1 - fy, fy
        if bilinear is not None:
            _put(bilinear, level, (wy0 * wx0, wy0 * fx, wy1 * wx0, wy1 * fx), rows)
        if att is not None:  # the attention weight rides on the y weights: (a (1 - fy), a fy)
            wy1 = fy * att[level]
            wy0 = att[level] - wy1
        _put(weight, level, (wy0 * wx0, wy0 * fx, wy1 * wx0, wy1 * fx), rows)
    if not direct:
        index, weight = torch.stack(index, 1), torch.stack(weight, 1)
        bilinear = None if bilinear is None else torch.stack(bilinear, 1)
    if keep_bilinear and bilinear is None:
        bilinear = weight
    return index.view(rows, -1), weight.view(rows, -1), None if bilinear is None else bilinear.view(rows, -1)


def _put(result: Tensor | list[Tensor], level: int, corners: tuple[Tensor, ...], rows: int) -> None:
    """Level ``level``'s four corner tensors (each ``[B, heads, Q, P]`` or ``[rows, P]``) interleaved into the
    result's columns ``[:, level]`` (``[rows, L, P, 4]``), or appended (a list: the compiled path)."""
    flat = [c.reshape(rows, -1) for c in corners]
    if isinstance(result, list):
        result.append(torch.stack(flat, -1))
    else:
        torch.stack(flat, -1, out=result[:, level])


def _tap_dots(index: Tensor, grad: Tensor, rows: Tensor, sparse: bool | None = None) -> Tensor:
    """``<grad[r], rows[index[r, k]]>`` for every tap: ``[R, K]``. A sampled dense-dense product (SDDMM) on
    the taps' sparsity pattern where sparse CSR runs (CPU, CUDA, eager); else gathered in chunks of one
    quarter of the taps, which never holds more than ``R x K/4 x D`` numbers. ``sparse``: force either."""
    r, k = index.shape
    if sparse is None:
        sparse = grad.device.type in ("cpu", "cuda") and not torch.compiler.is_compiling()
    if sparse:
        with warnings.catch_warnings():  # "sparse CSR support is in beta": this use is covered by the tests
            warnings.simplefilter("ignore", UserWarning)
            # row pointers in the index's own dtype: mixed int32 / int64 indices would be converted (copied)
            crow = torch.arange(0, r * k + 1, k, device=index.device, dtype=index.dtype)
            pattern = torch.sparse_csr_tensor(crow, index.reshape(-1),
                                              torch.zeros(r * k, dtype=grad.dtype, device=grad.device),
                                              size=(r, rows.shape[0]), check_invariants=False)
        return torch.sparse.sampled_addmm(pattern, grad, rows.t(), beta=0.0).values().view(r, k)
    chunk = max(1, k // 4)
    return torch.cat([torch.einsum("rkd,rd->rk", rows[index[:, i:i + chunk]], grad) for i in range(0, k, chunk)], 1)


def _taps_sum(value: Tensor, locations: Tensor, attention: Tensor, hw: list[tuple[int, int]], starts: list[int],
              keep_bilinear: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
    """The fast path's forward: ``[B * heads * Q, D]`` (rows in (b, m, q) order), and the taps' index and
    bilinear weights (``bilinear_taps``) for the backward."""
    index, taps, bil = bilinear_taps(locations, hw, attention, keep_bilinear)
    return F.embedding_bag(index, padded_rows(value, hw, starts), per_sample_weights=taps, mode="sum"), index, bil


def _grids_and_weights(locations: Tensor, attention: Tensor) -> tuple[Tensor, Tensor]:
    """grid_sample's layouts, one batch entry per (image, head): grids ``[L, B * heads, P, Q, 2]`` in its
    [-1, 1] convention and attention weights ``[L, B * heads, 1, P, Q]``."""
    b, q, heads, levels, points, _ = locations.shape
    grids = (2 * locations - 1).permute(3, 0, 2, 4, 1, 5).reshape(levels, b * heads, points, q, 2)
    return grids, attention.permute(3, 0, 2, 4, 1).reshape(levels, b * heads, 1, points, q)


class _TapsAndWeight(torch.autograd.Function):
    """The fast path's forward with its backward: ``sum_taps attention * bilinear weight * value row``.

    Forward: one ``embedding_bag`` (sum mode, per-tap weights) over all levels, points and corners: it reads
    each tap's ``head_dim`` values once and keeps no per-sample tensor. Backward (from the inputs, and the taps
    when the attention weights need a gradient): the gradients of the value map and of the locations from
    ATen's ``grid_sampler_2d_backward`` level by level (the bilinear formulas ``grid_sample`` also uses), and
    that of the attention weights as the taps' dot products with the output gradient (``_tap_dots``), weighted
    by the bilinear weights.
    """

    @staticmethod
    def forward(ctx, value: Tensor, locations: Tensor, attention: Tensor, hw: list[tuple[int, int]],
                starts: list[int]) -> Tensor:
        """value ``[B, S, heads, D]``, locations ``[B, Q, heads, L, P, 2]``, attention ``[B, Q, heads, L, P]``
        -> ``[B * heads * Q, D]`` (rows in (b, m, q) order)."""
        need_a = ctx.needs_input_grad[2]
        out, index, bil = _taps_sum(value, locations, attention, hw, starts, keep_bilinear=need_a)
        ctx.hw, ctx.starts = hw, starts
        # the taps (int32 + float: 8 bytes a tap) instead of recomputing them: the attention gradient needs them
        ctx.save_for_backward(value, locations, attention, *((index, bil) if need_a else ()))
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        value, loc, attn, *taps = ctx.saved_tensors
        need_v, need_loc, need_a = ctx.needs_input_grad[:3]
        b, s, heads, d = value.shape
        _, q, _, levels, points, _ = loc.shape
        n = b * heads
        grad_v = grad_loc = grad_a = None
        if need_a:
            index, bil = taps
            dots = _tap_dots(index, grad_out, padded_rows(value, ctx.hw, ctx.starts))
            grad_a = (dots * bil).view(b, heads, q, levels, points, 4).sum(-1).permute(0, 2, 1, 3, 4)
        if need_v or need_loc:
            v = value.permute(0, 2, 3, 1).reshape(n, d, s)  # head-major maps, as grid_sample reads them
            # [N, D, 1, Q], contiguous: the products below and grid_sampler's input then need no copy
            g = grad_out.view(n, q, d).transpose(1, 2).contiguous().unsqueeze(2)
            grids, a = _grids_and_weights(loc, attn)
            gv = torch.zeros_like(v) if need_v else None
            gg = torch.empty_like(grids) if need_loc else None
            # one [N, D, P, Q] buffer for every level's per-sample gradient: on a CPU each fresh buffer of this
            # size is fresh pages from the OS, whose faults cost more than the multiplication
            per_sample = g.new_empty(n, d, points, q)
            for level, ((h, w), start) in enumerate(zip(ctx.hw, ctx.starts)):
                d_map, d_grid = torch.ops.aten.grid_sampler_2d_backward(
                    torch.mul(g, a[level], out=per_sample), v[:, :, start:start + h * w].reshape(n, d, h, w),
                    grids[level], 0, 0, False, [need_v, need_loc])
                if need_v:
                    gv[:, :, start:start + h * w] += d_map.flatten(2)
                if need_loc:
                    gg[level] = d_grid
            if need_v:
                grad_v = gv.view(b, heads, d, s).permute(0, 3, 1, 2)
            if need_loc:  # d grid / d location = 2
                grad_loc = 2 * gg.view(levels, b, heads, points, q, 2).permute(1, 4, 2, 0, 3, 5)
        return grad_v, grad_loc, grad_a, None, None


def _sample_and_weight(v: Tensor, grids: Tensor, weights: Tensor, hw: list[tuple[int, int]],
                       starts: list[int]) -> Tensor:
    """The export path (traced for ONNX, where ``GridSample`` exists and ``embedding_bag`` does not), on
    head-major tensors: v ``[N, D, S]`` (N = batch * heads); grids ``[L, N, P, Q, 2]`` in grid_sample's
    [-1, 1] convention; weights ``[L, N, 1, P, Q]``. Returns ``[N, D, Q]``."""
    n, d, _ = v.shape
    out = None
    for level, ((h, w), start) in enumerate(zip(hw, starts)):
        level_map = v[:, :, start:start + h * w].reshape(n, d, h, w)
        s = F.grid_sample(level_map, grids[level], mode="bilinear", padding_mode="zeros", align_corners=False)
        for p in range(s.shape[2]):  # accumulate point by point: no [N, D, P, Q] product tensor
            term_s, term_w = s[:, :, p], weights[level, :, :, p]
            out = term_s * term_w if out is None else torch.addcmul(out, term_s, term_w)
    return out


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
    q = sampling_locations.shape[1]
    dtype = torch.promote_types(torch.promote_types(value.dtype, sampling_locations.dtype), attention_weights.dtype)
    if dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32
    v, loc, attn = value.to(dtype), sampling_locations.to(dtype), attention_weights.to(dtype)
    # ONNX export (no EmbeddingBag op) and devices other than CPU / CUDA (whose embedding_bag and sparse
    # kernels this path relies on): the grid_sample formulation, in head-major layouts, through plain autograd
    if _tracing() or value.device.type not in ("cpu", "cuda"):
        grids, weights = _grids_and_weights(loc, attn)
        out = _sample_and_weight(v.permute(0, 2, 3, 1).reshape(b * heads, head_dim, value.shape[1]), grids, weights,
                                 hw, starts)
        return out.view(b, heads * head_dim, q).transpose(1, 2).contiguous().to(value.dtype)
    if _needs_autograd(v, loc, attn):
        out = _TapsAndWeight.apply(v, loc, attn, hw, starts)
    else:
        out = _taps_sum(v, loc, attn, hw, starts)[0]
    # rows (b, m, q) -> [B, Q, heads * D]
    return out.view(b, heads, q, head_dim).permute(0, 2, 1, 3).reshape(b, q, heads * head_dim).to(value.dtype)


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
