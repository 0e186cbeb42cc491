"""H-DETR's hybrid matching (Jia et al. 2023): a training-only one-to-many branch.

Besides the one-to-one queries, the two-stage selector picks ``num_one2many`` more proposals; they are
decoded with the same layers but cannot attend to the one-to-one queries (nor those to them), and they are
matched against the ground truth repeated ``k`` times, so each GT gets several positive queries (a denser
signal) while inference keeps the one-to-one queries alone and needs no NMS.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...fields import Component, knob

from ...structures import QuerySpan, Target
from ..memory import Memory
from ..queries import Queries


def branch_mask(num_one2one: int, num_one2many: int, device: torch.device) -> Tensor:
    """``[Q1 + Q2, Q1 + Q2]`` bool, True between the branches (no attention across)."""
    n = num_one2one + num_one2many
    mask = torch.zeros(n, n, dtype=torch.bool, device=device)
    mask[:num_one2one, num_one2one:] = True
    mask[num_one2one:, :num_one2one] = True
    return mask


class HybridQueries(nn.Module):
    """Wraps a two-stage selector (which accepts ``num_queries``); training adds the one-to-many branch."""

    def __init__(self, base: nn.Module, num_one2many: int, k: int = 6, weight: float = 1.0) -> None:
        super().__init__()
        self.base, self.num_one2many, self.k, self.weight = base, num_one2many, k, weight

    def forward(self, memory: Memory, targets: list[Target] | None = None, head: nn.Module | None = None) -> Queries:
        if not self.training:
            return self.base(memory, targets, head)
        n1 = self.base.num_queries
        q = self.base(memory, targets, head, num_queries=n1 + self.num_one2many)
        n2 = q.content.shape[1] - n1
        if n2 <= 0:  # fewer tokens than queries: nothing left for the branch
            return q
        q.self_attn_mask = branch_mask(n1, n2, q.content.device)
        # matched against the GT repeated k times (final and every auxiliary layer)
        q.after = q.after + [QuerySpan("_o2m", n2, target_repeat=self.k, weight=self.weight)]
        return q


@dataclass
class OneToManyConfig(Component):
    """H-DETR's one-to-many branch (training only; needs two-stage query selection)."""

    kind = "one_to_many"
    num_queries: int = knob(1500, ge=1)  # extra queries of the branch (H-Deformable-DETR: 1500)
    k: int = knob(6, ge=1)  # the GT is repeated k times for the branch's matching
    weight: float = knob(1.0, ge=0)  # multiplies every loss of the branch

    def build(self, base: nn.Module) -> HybridQueries:
        return HybridQueries(base, self.num_queries, self.k, self.weight)
