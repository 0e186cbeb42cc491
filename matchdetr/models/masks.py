"""Padding masks resized to a feature map, identically in eager PyTorch and in an exported ONNX graph."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def downsample_mask(mask: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """``[B, H, W]`` bool -> ``[B, h, w]`` bool by nearest interpolation (DETR's mask for each level).

    Eager: ``F.interpolate(mode="nearest")``. Under tracing (ONNX export) the same source indices are gathered
    explicitly, ``floor(i * (H / h))`` in float32 as PyTorch's kernel computes them: ONNX ``Resize`` derives
    them from ``h / H`` instead, which rounds differently at some sizes (e.g. 52 -> 4) and would shift the mask
    by a pixel in the exported model.
    """
    if not torch.jit.is_tracing():
        return F.interpolate(mask[:, None].float(), size=size).to(torch.bool)[:, 0]
    src = torch._shape_as_tensor(mask)
    dst = torch.stack([torch.as_tensor(s) for s in size]) if not isinstance(size, Tensor) else size
    rows = _nearest_index(src[1], dst[0], mask.device)
    cols = _nearest_index(src[2], dst[1], mask.device)
    return mask.index_select(1, rows).index_select(2, cols)


def _nearest_index(src: Tensor, dst: Tensor, device: torch.device) -> Tensor:
    scale = src.to(torch.float32) / dst.to(torch.float32)
    index = torch.floor(torch.arange(dst, device=device).to(torch.float32) * scale).to(torch.long)
    return torch.minimum(index, src - 1)
