"""RoIAlign (He et al. 2017, Mask R-CNN sec 3) in pure PyTorch, with torchvision's exact semantics.

For box ``(x0, y0, x1, y1)`` in input pixels (times ``spatial_scale``; ``aligned`` subtracts half a pixel so
that pixel ``i`` is centred at ``i + 0.5``), the output bin ``(i, j)`` of a ``P x Q`` grid is the mean of
``gh x gw`` bilinear samples at the centres of a regular sub-grid of the bin. ``gh = sampling_ratio`` or, when
``sampling_ratio`` is None ("adaptive"; torchvision's ``<= 0`` means the same), ``ceil(roi_h / P)`` per box (likewise ``gw``). A sample at ``(y, x)``
reads 0 when ``y < -1``, ``y > H``, ``x < -1`` or ``x > W``; otherwise the coordinate is clamped to
``[0, H-1] x [0, W-1]`` and bilinearly interpolated, as torchvision's kernel does.

Fast path: the bilinear weight of a sample is a product ``w_y(y) * w_x(x)`` and the samples of a bin form a
Cartesian grid, so the whole pooling is separable: ``out[c] = Wy @ F[c] @ Wx^T`` with ``Wy [P, H]`` the summed
per-row weights of the bin's y-samples (``Wx [Q, W]`` likewise). We build ``Wy``/``Wx`` for every box with
elementwise ops (no per-box Python loop, no data-dependent control flow) and contract with two batched matmuls,
which export to ONNX (opset >= 16) with dynamic batch, box and map sizes. With a fixed
``sampling_ratio`` every shape is static in the number of samples; the adaptive mode sizes the sample axis by
the largest box (``max(g)``, a device-to-host read), so export a model with a fixed ratio. Under
``torch.compile`` the adaptive axis is sized by the map instead (no host read, no graph break), which gives the
same result for every box that fits in the map (``_axis_weights``).

``roi_align_naive`` is the per-box, per-bin, per-sample loop used as the reference in the tests.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _as_pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _axis_weights(start: Tensor, length: Tensor, pooled: int, size: int,
                  sampling_ratio: int | None) -> tuple[Tensor, Tensor]:
    """Per-axis interpolation matrices.

    start, length: ``[K]`` box start and extent along the axis (feature pixels, offset already applied).
    Returns ``weights [K, pooled, size]`` (sum over the bin's samples of the clamped tent weights; 0 for
    samples outside ``[-1, size]``) and ``count [K]``, the number of samples per bin along this axis.
    """
    bin_size = length / pooled
    if sampling_ratio is not None and sampling_ratio > 0:
        count = torch.full_like(length, float(sampling_ratio))
        samples = torch.arange(sampling_ratio, device=length.device, dtype=length.dtype)
    else:
        # adaptive: ceil(extent / bins) samples per bin, at least 0 (degenerate boxes read nothing)
        count = torch.ceil(length / pooled).clamp(min=0)
        if torch.compiler.is_compiling():
            # The largest box's count is data (a host read that breaks the graph): size the axis by the map
            # instead. Extra samples are masked out by `samples < count`, so a box no longer than the map plus
            # a pixel gives the same result; a longer one is capped at this many samples per bin.
            bound = (size + pooled - 1) // pooled + 1
            count = count.clamp(max=bound)
            samples = torch.arange(bound, device=length.device, dtype=length.dtype)
        else:
            samples = torch.arange(count.max().clamp(min=1).to(torch.long), device=length.device).to(length.dtype)
    p = torch.arange(pooled, device=length.device, dtype=length.dtype)
    # [K, pooled, G]: sample t of bin p sits at start + p * bin + (t + 0.5) * bin / count
    coords = (start[:, None, None] + p[None, :, None] * bin_size[:, None, None]
              + (samples[None, None, :] + 0.5) * bin_size[:, None, None] / count.clamp(min=1)[:, None, None])
    valid = (samples[None, None, :] < count[:, None, None]) & (coords >= -1.0) & (coords <= size)
    clamped = coords.clamp(min=0.0, max=size - 1)
    grid = torch.arange(size, device=length.device, dtype=length.dtype)
    tent = (1.0 - (clamped[..., None] - grid).abs()).clamp(min=0.0)  # [K, pooled, G, size]
    weights = (tent * valid[..., None].to(tent.dtype)).sum(2)
    return weights, count


def roi_align(features: Tensor, boxes: Tensor, output_size: int | tuple[int, int] = 7,
              spatial_scale: float = 1.0, sampling_ratio: int | None = None, aligned: bool = True) -> Tensor:
    """RoIAlign of ``N`` boxes per image.

    features: ``[B, C, H, W]``.
    boxes: ``[B, N, 4]`` absolute ``(x0, y0, x1, y1)`` in input pixels (scaled by ``spatial_scale``).
    Returns ``[B, N, C, P, Q]``. Differentiable in ``features`` and ``boxes`` (torchvision gives boxes no
    gradient; callers that want that detach them).
    """
    ph, pw = _as_pair(output_size)
    b, c, h, w = features.shape
    n = boxes.shape[1]
    # coordinates and weights at float32 at least: a bf16 coordinate is only good to ~1/256 of the map
    flat = boxes.reshape(b * n, 4).to(torch.promote_types(features.dtype, torch.float32)) * spatial_scale
    offset = 0.5 if aligned else 0.0
    x0, y0 = flat[:, 0] - offset, flat[:, 1] - offset
    roi_w, roi_h = flat[:, 2] - offset - x0, flat[:, 3] - offset - y0
    if not aligned:  # legacy behaviour: boxes are at least one pixel
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    wy, gy = _axis_weights(y0, roi_h, ph, h, sampling_ratio)
    wx, gx = _axis_weights(x0, roi_w, pw, w, sampling_ratio)
    wy = (wy / (gy * gx).clamp(min=1)[:, None, None]).to(features.dtype)  # the mean over gh * gw samples
    wx = wx.to(features.dtype)
    # two batched matmuls without large permuted copies: rows first ([B, N*P, H] @ [B, H, C*W]), then columns
    rows = wy.view(b, n * ph, h) @ features.permute(0, 2, 1, 3).reshape(b, h, c * w)  # [B, N*P, C*W]
    out = rows.view(b * n, ph * c, w) @ wx.view(b * n, pw, w).transpose(1, 2)  # [B*N, P*C, Q]
    return out.view(b, n, ph, c, pw).transpose(2, 3)


def roi_align_naive(features: Tensor, boxes: Tensor, output_size: int | tuple[int, int] = 7,
                    spatial_scale: float = 1.0, sampling_ratio: int | None = None, aligned: bool = True) -> Tensor:
    """Reference transcription of torchvision's CPU kernel: loops over boxes, bins and samples.

    Same arguments and result as :func:`roi_align`; slow, for tests only.
    """
    ph, pw = _as_pair(output_size)
    b, c, h, w = features.shape
    out = features.new_zeros(b, boxes.shape[1], c, ph, pw)
    offset = 0.5 if aligned else 0.0

    def bilinear(img: Tensor, y: float, x: float) -> Tensor:
        if y < -1.0 or y > h or x < -1.0 or x > w:
            return img.new_zeros(c)
        y, x = max(y, 0.0), max(x, 0.0)
        y_low, x_low = int(y), int(x)
        if y_low >= h - 1:
            y_high = y_low = h - 1
            y = float(y_low)
        else:
            y_high = y_low + 1
        if x_low >= w - 1:
            x_high = x_low = w - 1
            x = float(x_low)
        else:
            x_high = x_low + 1
        ly, lx = y - y_low, x - x_low
        hy, hx = 1.0 - ly, 1.0 - lx
        return (hy * hx * img[:, y_low, x_low] + hy * lx * img[:, y_low, x_high]
                + ly * hx * img[:, y_high, x_low] + ly * lx * img[:, y_high, x_high])

    for bi in range(b):
        for ni in range(boxes.shape[1]):
            x0, y0, x1, y1 = (float(v) * spatial_scale for v in boxes[bi, ni])
            x0, y0, x1, y1 = x0 - offset, y0 - offset, x1 - offset, y1 - offset
            roi_w, roi_h = x1 - x0, y1 - y0
            if not aligned:
                roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
            bin_h, bin_w = roi_h / ph, roi_w / pw
            fixed = sampling_ratio is not None and sampling_ratio > 0
            gh = sampling_ratio if fixed else math.ceil(roi_h / ph)
            gw = sampling_ratio if fixed else math.ceil(roi_w / pw)
            count = max(gh * gw, 1)
            for i in range(ph):
                for j in range(pw):
                    acc = features.new_zeros(c)
                    for iy in range(max(gh, 0)):
                        y = y0 + i * bin_h + (iy + 0.5) * bin_h / gh
                        for ix in range(max(gw, 0)):
                            x = x0 + j * bin_w + (ix + 0.5) * bin_w / gw
                            acc = acc + bilinear(features[bi], y, x)
                    out[bi, ni, :, i, j] = acc / count
    return out
