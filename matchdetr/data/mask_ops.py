"""Geometry of instance masks: ``[N, h, w]`` bool tensors moved with their image, step for step as the boxes.

Each function is the mask twin of a box operation: ``orient_masks`` of ``images.exif_transform_boxes``,
``align_masks`` of ``images.align_boxes``, ``hflip_masks`` / ``resize_masks`` / ``crop_masks`` of
``transforms.hflip`` / ``resize`` / ``crop``; ``box_masks`` fills boxes (``boxes.mask_extents`` is the reverse).
Pixel ``(col i, row j)`` covers ``[i, i + 1) x [j, j + 1)`` in the box coordinates, so a filled box stays that
box (to within a pixel) through every step. Nothing here draws random numbers: the transforms' random stream
is the same with masks or without.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .images import DecodedImage

__all__ = ["orient_masks", "align_masks", "hflip_masks", "resize_masks", "crop_masks", "box_masks"]


def orient_masks(masks: Tensor, orientation: int) -> Tensor:
    """``[N, h, w]`` masks of the stored pixels -> the upright image, for EXIF orientation ``2..8``.

    The same pixel moves as PIL's transpose in ``decode._TRANSPOSE`` (and the box maps of
    ``exif_transform_boxes``): e.g. 6 maps a point ``(x, y)`` to ``(h - y, x)``, i.e. rows become columns read
    bottom-up. Any other value returns the masks unchanged."""
    if orientation == 2:
        return masks.flip(-1)
    if orientation == 3:
        return masks.flip(-1, -2)
    if orientation == 4:
        return masks.flip(-2)
    if orientation == 5:
        return masks.transpose(-1, -2).contiguous()
    if orientation == 6:
        return masks.flip(-2).transpose(-1, -2).contiguous()
    if orientation == 7:
        return masks.flip(-1, -2).transpose(-1, -2).contiguous()
    if orientation == 8:
        return masks.flip(-1).transpose(-1, -2).contiguous()
    return masks


def align_masks(masks: Tensor, json_size: tuple[int, int], decoded: DecodedImage) -> Tensor:
    """Move ``[N, H, W]`` masks decoded at the annotation file's ``json_size`` ``(w, h)`` into the upright
    image, by the same three cases as ``images.align_boxes`` (which also words the note for the user)."""
    actual = decoded.image.size
    if decoded.orientation != 1 and json_size == decoded.raw_size:
        return orient_masks(masks, decoded.orientation)
    if json_size != actual:
        return resize_masks(masks, (actual[1], actual[0]))
    return masks


def hflip_masks(masks: Tensor) -> Tensor:
    """Mirror ``[N, h, w]`` masks: column ``i`` -> ``w - 1 - i``, which is the box map ``x -> w - x``."""
    return masks.flip(-1)


def _nearest(src: int, dst: int, device: torch.device) -> Tensor:
    """``[dst]`` source index under each output pixel's centre: ``floor((i + 0.5) * src / dst)``. Centre
    sampling (not torch's ``nearest``, which reads at the left edge) keeps a scaled box's pixels inside it."""
    index = ((torch.arange(dst, dtype=torch.float64, device=device) + 0.5) * (src / dst)).floor().long()
    return index.clamp_(max=src - 1)


def resize_masks(masks: Tensor, size_hw: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of ``[N, h, w]`` masks to ``[N, H, W]`` (``size_hw = (H, W)``); the boxes'
    per-axis ratios. Nearest, not bilinear: a mask stays a set of pixels, with no threshold to pick."""
    h, w = size_hw
    if tuple(masks.shape[-2:]) == (h, w):
        return masks
    rows, cols = _nearest(masks.shape[-2], h, masks.device), _nearest(masks.shape[-1], w, masks.device)
    return masks.index_select(-2, rows).index_select(-1, cols)


def crop_masks(masks: Tensor, region: tuple[int, int, int, int]) -> Tensor:
    """The window ``region = (top, left, h, w)`` of ``[N, H, W]`` masks, ``[N, h, w]``; a window reaching past
    the image reads empty pixels there, as PIL's crop reads black ones."""
    top, left, h, w = region
    out = masks.new_zeros((masks.shape[0], h, w))
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, masks.shape[-2]), min(left + w, masks.shape[-1])
    if y1 > y0 and x1 > x0:
        out[:, y0 - top:y1 - top, x0 - left:x1 - left] = masks[:, y0:y1, x0:x1]
    return out


def box_masks(boxes: Tensor, size_hw: tuple[int, int]) -> Tensor:
    """``[N, h, w]`` bool: each ``[N, 4]`` abs xyxy box filled, as the pixels whose centre lies inside it (at
    least the one under the box's centre, so a sub-pixel box is not an empty mask)."""
    h, w = size_hw
    boxes = boxes.reshape(-1, 4).double()
    lo = torch.ceil(boxes[:, :2] - 0.5).long()
    hi = torch.ceil(boxes[:, 2:] - 0.5).long()
    centre = torch.floor((boxes[:, :2] + boxes[:, 2:]) / 2).long()
    lo, hi = torch.minimum(lo, centre), torch.maximum(hi, centre + 1)
    limit = torch.tensor([w, h])
    lo, hi = lo.clamp(min=0).minimum(limit - 1), hi.minimum(limit).clamp(min=1)
    cols, rows = torch.arange(w), torch.arange(h)
    in_x = (cols >= lo[:, :1]) & (cols < hi[:, :1])  # [N, w]
    in_y = (rows >= lo[:, 1:]) & (rows < hi[:, 1:])  # [N, h]
    return in_y[:, :, None] & in_x[:, None, :]
