"""Importance sampling of mask points by uncertainty (PointRend, Kirillov et al. 2020, sec 3.1 "point selection
for training"; detectron2's ``get_uncertain_point_coords_with_randomness``, which Mask2Former and the Mask-DINO
release use to pick the points their mask losses are computed at).

From ``kN`` uniform random candidates (``k = oversample_ratio``) keep the ``beta N`` most uncertain
(``beta = importance_sample_ratio``) and add ``(1 - beta) N`` fresh uniform points, so the loss concentrates on
the predicted boundary while still seeing the whole mask. Uncertainty is ``-|logit|``: a logit near 0 is a
probability near 0.5.

Every random draw uses torch's global generator on the logits' device, in the release's order (candidates, then
the fill), so a run resumed from a saved RNG state draws the same points.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .point_sample import point_sample


def uncertainty(logits: Tensor) -> Tensor:
    """``-|logit|`` (Mask2Former's ``calculate_uncertainty``): highest where the prediction is least sure."""
    return -logits.abs()


def point_budget(num_points: int, oversample_ratio: float, importance_sample_ratio: float) -> tuple[int, int]:
    """``(candidates, importance points)``: ``int(N * k)`` and ``int(beta * N)``, rounded down as the release does.

    Raises ValueError unless ``N >= 1``, ``k >= 1`` and ``0 <= beta <= 1`` (then there are always enough
    candidates to choose from)."""
    if num_points < 1 or oversample_ratio < 1 or not 0 <= importance_sample_ratio <= 1:
        raise ValueError(f"point sampling needs num_points >= 1, oversample_ratio >= 1 and 0 <= importance_sample_ratio"
                         f" <= 1; got {num_points}, {oversample_ratio}, {importance_sample_ratio}")
    return int(num_points * oversample_ratio), int(importance_sample_ratio * num_points)


def select_uncertain(candidates: Tensor, point_uncertainty: Tensor, k: int) -> Tensor:
    """The ``k`` candidates of highest uncertainty per mask, most uncertain first.

    candidates: ``[K, M, 2]``; point_uncertainty: ``[K, M]``; returns ``[K, k, 2]``.
    """
    idx = point_uncertainty.topk(k, dim=1).indices
    return candidates.gather(1, idx[..., None].expand(-1, -1, 2))


@torch.no_grad()  # the choice of points carries no gradient (the release computes it under no_grad too)
def uncertain_point_coords(
    logits: Tensor, num_points: int, oversample_ratio: float = 3.0, importance_sample_ratio: float = 0.75
) -> Tensor:
    """Points to evaluate a mask loss at.

    logits: ``[K, 1, H, W]`` mask logits. Returns ``[K, num_points, 2]`` ``(x, y)`` in ``[0, 1]``: first the
    ``int(importance_sample_ratio * num_points)`` most uncertain of ``int(num_points * oversample_ratio)`` uniform
    candidates (uncertainty sampled bilinearly from ``logits``), then fresh uniform points. Float32 (float64 for
    float64 logits).
    """
    num_candidates, num_uncertain = point_budget(num_points, oversample_ratio, importance_sample_ratio)
    n, dtype, device = logits.shape[0], torch.promote_types(logits.dtype, torch.float32), logits.device
    candidates = torch.rand(n, num_candidates, 2, device=device, dtype=dtype)
    chosen = select_uncertain(candidates, uncertainty(point_sample(logits.to(dtype), candidates)[:, 0]), num_uncertain)
    if num_points > num_uncertain:
        chosen = torch.cat([chosen, torch.rand(n, num_points - num_uncertain, 2, device=device, dtype=dtype)], 1)
    return chosen
