"""Sine positional embeddings: of the image grid (DETR) and of points / boxes (Conditional-DETR, DAB-DETR).

Both use the Transformer's frequencies (Vaswani et al. 2017, sec. 3.5) per coordinate ``p``: for feature
``i`` in ``0..F-1``, ``t_i = temperature ** (2 * (i // 2) / F)`` and the feature is ``sin(p / t_i)`` for even
``i`` and ``cos(p / t_i)`` for odd ``i`` (sin and cos of the same frequency interleaved), as DETR's
``stack((sin(pos[..., 0::2]), cos(pos[..., 1::2])), -1).flatten(-2)`` lays them out.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # Angles reach 2*pi / t_i with t_i down to 1, so half precision would lose the high frequencies: work in
    # float32 at least (float64 stays float64 for exact tests) and cast the result.
    return torch.promote_types(dtype, torch.float32)


def _sine(pos: Tensor, num_pos_feats: int, temperature: float) -> Tensor:
    """``pos [...]`` (already scaled) -> ``[..., num_pos_feats]`` interleaved sin/cos (module docstring)."""
    if num_pos_feats % 2:
        raise ValueError(f"num_pos_feats must be even (sin/cos pairs), got {num_pos_feats}")
    dim_t = torch.arange(num_pos_feats, dtype=pos.dtype, device=pos.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)
    angles = pos[..., None] / dim_t
    return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)


class PositionEmbeddingSine(nn.Module):
    """DETR's normalised sine embedding of the feature grid (DETR, sec. 3.2 and appendix A.4).

    Row and column indices are counted (1-based cumulative sums) over the valid, not-padded pixels only, and
    with ``normalize`` divided by the valid height / width, so every image spans ``(0, scale]`` whatever the
    padding of its batch: ``y = (cumsum_y + offset) / (valid_h + eps) * scale``. Deformable-DETR uses
    ``offset=-0.5`` (pixel centres); DETR uses 0.

    Args:
        num_pos_feats: features per axis F; the output has ``2 * F`` channels (``hidden_dim // 2`` each).
        temperature: frequency base.
        normalize: divide by the valid extent and multiply by ``scale``; else raw 1-based indices.
        scale: range of the normalised coordinate (DETR: 2*pi).
        offset: added to the cumulative index before normalising.
    """

    def __init__(self, num_pos_feats: int = 128, temperature: float = 10000.0, normalize: bool = True,
                 scale: float = 2 * math.pi, offset: float = 0.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = scale
        self.offset = offset
        self.eps = eps

    def forward(self, mask: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """``mask [B, h, w]`` bool, True on padding -> ``[B, 2 * F, h, w]`` of ``dtype``.

        Channels ``0..F-1`` embed y (row), channels ``F..2F-1`` embed x (column), as DETR orders them.
        """
        work = _compute_dtype(dtype)
        not_mask = ~mask
        y_embed = not_mask.cumsum(1, dtype=work)
        x_embed = not_mask.cumsum(2, dtype=work)
        if self.normalize:
            # The last row / column holds the valid height / width of each column / row (padding adds 0).
            y_embed = (y_embed + self.offset) / (y_embed[:, -1:, :] + self.eps) * self.scale
            x_embed = (x_embed + self.offset) / (x_embed[:, :, -1:] + self.eps) * self.scale
        pos_y = _sine(y_embed, self.num_pos_feats, self.temperature)
        pos_x = _sine(x_embed, self.num_pos_feats, self.temperature)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2).to(dtype)

    def extra_repr(self) -> str:
        return (f"num_pos_feats={self.num_pos_feats}, temperature={self.temperature}, "
                f"normalize={self.normalize}, scale={self.scale:.4f}, offset={self.offset}")


def sine_embed(coords: Tensor, num_pos_feats: int = 128, temperature: float = 10000.0,
               scale: float = 2 * math.pi) -> Tensor:
    """Sine embedding of points or boxes in ``[0, 1]`` (DAB-DETR's ``gen_sineembed_for_position``).

    ``coords [..., K]`` -> ``[..., K * num_pos_feats]`` of the same dtype. Each coordinate ``c`` is embedded as
    ``_sine(c * scale)`` (module docstring) and the K blocks of ``num_pos_feats`` are concatenated in the order
    of the input with the first two swapped, i.e. (y, x) for points ``(x, y)`` and (y, x, w, h) for boxes
    ``(cx, cy, w, h)``, matching the (y, x) channel order of :class:`PositionEmbeddingSine` (Conditional-DETR's
    spatial attention takes dot products between the two, so the orders must agree).
    """
    per_coord = _sine(coords.to(_compute_dtype(coords.dtype)) * scale, num_pos_feats, temperature)
    if coords.shape[-1] >= 2:
        per_coord = torch.cat((per_coord[..., 1:2, :], per_coord[..., 0:1, :], per_coord[..., 2:, :]), dim=-2)
    return per_coord.flatten(-2).to(coords.dtype)
