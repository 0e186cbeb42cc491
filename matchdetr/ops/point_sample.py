"""Bilinear sampling of maps at normalised points (PointRend, Kirillov et al. 2020; detectron2's ``point_sample``,
which Mask2Former and the Mask-DINO release use for every mask loss and mask matching cost).

A point ``(x, y)`` in ``[0, 1]^2`` names a place in the map's frame: ``(0, 0)`` the top-left corner of the first
pixel, ``(1, 1)`` the bottom-right corner of the last. With ``align_corners=False`` (the release's choice) pixel
``i`` is centred at ``(i + 0.5) / W``, so a map and an upsampled copy of it agree at every point; the
interpolation reads 0 beyond the map (``padding_mode="zeros"``), as ``F.grid_sample`` does.

:func:`point_sample_on_canvas` samples masks of an unpadded image as if they were zero-padded bottom/right to a
larger canvas (the padded batch), without building the padded copies.

:func:`point_sample_naive` is the per-point loop the tests hold the fast path to.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def point_sample(maps: Tensor, coords: Tensor, align_corners: bool = False) -> Tensor:
    """Bilinear values of ``maps`` at ``coords``.

    maps: ``[B, C, H, W]`` float.
    coords: ``[B, P, 2]`` ``(x, y)`` in ``[0, 1]`` (cast to ``maps``' dtype; grid_sample needs them equal).
    Returns ``[B, C, P]``.
    """
    # grid_sample reads a grid [B, H_out, W_out, 2] in [-1, 1]; one output row of P points.
    grid = 2.0 * coords.to(maps.dtype)[:, :, None, :] - 1.0
    out = F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=align_corners)
    return out[..., 0]


def point_sample_on_canvas(masks: Tensor, coords: Tensor, canvas: tuple[int, int]) -> Tensor:
    """Sample masks of the unpadded image as if zero-padded bottom/right to ``canvas`` (``align_corners=False``).

    masks: ``[N, h, w]`` (bool or float); coords: ``[N, P, 2]`` or ``[1, P, 2]`` (shared by every mask), ``(x, y)``
    in ``[0, 1]`` of the canvas; canvas: ``(H, W)``. Returns ``[N, P]`` float (``coords``' dtype, at least float32).

    Why not pad: with ``align_corners=False`` canvas point ``x`` sits at pixel ``x * W - 0.5``; the same pixel of
    the unpadded mask is at its own normalised ``x * W / w``, and beyond the mask ``grid_sample`` reads zeros, exactly
    what the padding would hold. So rescaling the points gives the padded result (tested) without an ``[N, H, W]``
    copy; a canvas smaller than the mask (never the case for a stride-4 map of the padded batch) crops it.
    """
    h, w = masks.shape[-2:]
    dtype = torch.promote_types(coords.dtype, torch.float32)
    scale = coords.new_tensor([canvas[1] / w, canvas[0] / h], dtype=dtype)
    scaled = coords.to(dtype) * scale
    if masks.shape[0] == 0:
        return scaled.new_zeros(0, scaled.shape[1])
    if scaled.shape[0] == 1:  # one set of points for every mask: the masks become channels of one map
        return point_sample(masks.to(dtype)[None], scaled)[0]
    return point_sample(masks.to(dtype)[:, None], scaled)[:, 0]


def point_sample_naive(maps: Tensor, coords: Tensor, align_corners: bool = False) -> Tensor:
    """Reference: the bilinear formula written out per image, channel and point (slow; tests only).

    Same arguments and result as :func:`point_sample`. Pixel coordinates are ``x * W - 0.5`` (``align_corners``
    False) or ``x * (W - 1)`` (True); each of the four neighbours outside the map contributes 0.
    """
    b, c, h, w = maps.shape
    rows = []
    for i in range(b):
        cols = [maps.new_zeros(c, 0)]
        for p in range(coords.shape[1]):
            x, y = coords[i, p, 0].to(maps.dtype), coords[i, p, 1].to(maps.dtype)
            px = x * (w - 1) if align_corners else x * w - 0.5
            py = y * (h - 1) if align_corners else y * h - 0.5
            x0, y0 = math.floor(px.item()), math.floor(py.item())
            value = maps.new_zeros(c)
            for yy in (y0, y0 + 1):
                for xx in (x0, x0 + 1):
                    if 0 <= yy < h and 0 <= xx < w:
                        weight = (1 - (px - xx).abs()) * (1 - (py - yy).abs())
                        value = value + weight * maps[i, :, yy, xx]
            cols.append(value[:, None])
        rows.append(torch.cat(cols, -1))
    return torch.stack(rows) if rows else maps.new_zeros(0, c, coords.shape[1])
