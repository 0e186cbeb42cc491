"""Hungarian matching on a weighted sum of composable costs (Carion et al. 2020, eq. 1)."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ..structures import Prediction, Target
from .costs import MatchInputs

Cost = Callable[[MatchInputs], Tensor]

# Stand-in for non-finite costs: linear_sum_assignment refuses NaN/inf, and a non-finite entry means the
# pair should never be preferred; finite so the solver still returns a complete assignment.
_BIG = 1e8


class HungarianMatcher:
    """One-to-one assignment per image minimising ``sum_k weight_k * cost_k``.

    costs: ``(weight, cost)`` pairs; a cost maps :class:`MatchInputs` to ``[Q, N]``.
    """

    def __init__(self, costs: Sequence[tuple[float, Cost]]) -> None:
        self.costs = list(costs)

    def cost_matrix(self, x: MatchInputs) -> Tensor:
        """``[Q, N]`` total cost of one image, float32."""
        total = torch.zeros(x.logits.shape[0], x.labels.shape[0], device=x.logits.device)
        for weight, cost in self.costs:
            if weight:
                total = total + weight * cost(x)
        return total

    @torch.no_grad()
    def __call__(
        self, pred: Prediction, targets: list[Target]
    ) -> list[tuple[Tensor, Tensor]]:
        """pred: logits ``[B, Q, C]``, boxes ``[B, Q, 4]``, optionally masks ``[B, Q, H/4, W/4]``; targets: B images
        (a one-to-many branch passes them repeated, ``Target.repeated``), optionally with masks.
        Returns per image ``(query_idx [K], gt_idx [K])`` int64 on the predictions' device, sorted by query.
        """
        out = []
        device = pred.logits.device
        for b, tgt in enumerate(targets):
            labels, boxes = tgt.labels, tgt.boxes
            if labels.numel() == 0:
                empty = torch.empty(0, dtype=torch.long, device=device)
                out.append((empty, empty))
                continue
            # Mask logits and GT masks as far as there are any (instance segmentation); box models pass None.
            masks = None if pred.masks is None else pred.masks[b].float()
            x = MatchInputs(pred.logits[b].float(), pred.boxes[b].float(), labels, boxes.float(), masks, tgt.masks)
            c = self.cost_matrix(x)
            c = torch.nan_to_num(c, nan=_BIG, posinf=_BIG, neginf=-_BIG).cpu().numpy()
            rows, cols = linear_sum_assignment(c)  # scipy returns the rows sorted: query order already
            out.append(
                (
                    torch.as_tensor(rows, dtype=torch.long, device=device),
                    torch.as_tensor(cols, dtype=torch.long, device=device),
                )
            )
        return out
