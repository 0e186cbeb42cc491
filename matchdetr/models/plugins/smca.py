"""Spatially Modulated Co-Attention (SMCA-DETR, Gao et al. ICCV 2021; SAM-DETR++ sec 4.5.1).

A 2-D Gaussian per query and head is added to the cross-attention logits, pulling each head towards a centre:

    G_h(j) = -(sx_h^2 * (x_h - (jx + 0.5))^2 + sy_h^2 * (y_h - (jy + 0.5))^2) / beta,   beta = 8

with ``(x_h, y_h)`` the centre in feature pixels of the padded map and ``j = (jx, jy)`` a memory position
(pixel centres at ``j + 0.5``). Two sources of centres and scales:

- ``KeypointGaussian`` (with the Semantics Aligner): centre = keypoint ``h``; the scales are ``2`` extra outputs
  per head of the aligner's keypoint MLP (``extra_outputs``), so it adds no parameters of its own;
- ``PredictedGaussian`` (standalone SMCA-DETR): centre ``sigmoid(MLP(q))`` shared by the heads and per-head
  scales ``Linear(q)``, predicted from each layer's query ``q`` (content + position). Simplification: the
  original predicts the centre once from the object query; here every layer predicts its own.

Both are a ``decoders.Modulation``: ``(query, memory of one level, aligned | None) -> [B, M, N, h*w]``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..layers import MLP
from ..memory import Memory
from .semantic_aligner import AlignedQueries

BETA = 8.0  # SMCA's bandwidth constant (SMCA-DETR sec 3.1), kept by SAM-DETR


def gaussian_logits(centres: Tensor, scales: Tensor, grid_like: Tensor, valid_ratio: Tensor) -> Tensor:
    """centres: ``[B, N, M|1, 2]`` (x, y) normalised to the valid image; scales: ``[B, N, M, 2]`` (sx, sy);
    grid_like: any ``[h, w]`` tensor of the map (only its shape is read); valid_ratio: ``[B, 2]`` (w, h)
    -> additive bias ``[B, M, N, h*w]``.

    The pixel grid and the map size come from ``grid_like`` by tensor ops (cumulative sums of ones), not from
    Python sizes, so an exported ONNX graph follows the input's size.
    """
    ones = torch.ones_like(grid_like, dtype=centres.dtype)
    ys, xs = ones.cumsum(0) - 0.5, ones.cumsum(1) - 0.5  # pixel centres j + 0.5
    size = valid_ratio * torch.stack((ones.sum(1)[0], ones.sum(0)[0]))  # valid extent (w, h) in feature pixels
    c = (centres * size[:, None, None]).transpose(1, 2)  # [B, M|1, N, 2]
    s2 = (scales * scales).transpose(1, 2)  # [B, M, N, 2]
    grid = torch.stack((xs.reshape(-1), ys.reshape(-1)), -1)  # [h*w, 2]
    dist = (c[..., None, :] - grid) ** 2  # [B, M|1, N, h*w, 2]
    return -(dist * s2[..., None, :]).sum(-1) / BETA


def _single_level(memory: Memory, who: str) -> tuple[Tensor, Tensor]:
    """A tensor of the map's size ``[h, w]`` (the first image's mask) and the valid ratio ``[B, 2]``."""
    if len(memory.shapes) != 1:
        raise ValueError(f"{who} reads one memory level, got {len(memory.shapes)}")
    return memory.level_mask(0)[0], memory.valid_ratios[:, 0]


class KeypointGaussian(nn.Module):
    """SMCA on top of the aligner: Gaussians centred at the keypoints (sec 4.5.1); no parameters."""

    extra_outputs = 2  # per head, appended to the aligner's keypoint MLP: (sx, sy)

    def forward(self, query: Tensor, memory: Memory, aligned: AlignedQueries | None) -> Tensor:
        """query: unused (the aligner's keypoints and scales place the Gaussians); memory: the layer's one
        level -> ``[B, M, N, h*w]``."""
        if aligned is None or aligned.extra is None:
            raise ValueError("KeypointGaussian needs the Semantics Aligner built with extra_outputs=2")
        return gaussian_logits(aligned.points, aligned.extra, *_single_level(memory, "SMCA on keypoints"))


class PredictedGaussian(nn.Module):
    """SMCA-DETR's modulation for a plain cross-attention layer: centres and scales from the query."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.centre = MLP(dim, dim, 2, 3)
        # default (non-zero) init: the bias is quadratic in the scale, so a zero scale would get no gradient
        self.scale = nn.Linear(dim, 2 * num_heads)

    def forward(self, query: Tensor, memory: Memory, aligned: AlignedQueries | None = None) -> Tensor:
        """query: ``[B, N, d]`` (content + position); memory: single-level; aligned: unused
        -> ``[B, M, N, h*w]``."""
        grid_like, valid_ratio = _single_level(memory, "SMCA-DETR's modulation")
        b, n, _ = query.shape
        centres = self.centre(query).sigmoid()[:, :, None]  # [B, N, 1, 2]
        scales = self.scale(query).view(b, n, self.num_heads, 2)
        return gaussian_logits(centres, scales, grid_like, valid_ratio)
