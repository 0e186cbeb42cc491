"""The one criterion: a single loop over every supervised prediction set.

Final layer, auxiliary layers, encoder proposals, denoising groups and one-to-many branches all arrive as
:class:`~matchdetr.structures.Supervised` entries from ``DetectorOutput.supervision()``; each is matched (or
uses its fixed assignment) and scored by the same components. A new classification loss or matching cost is a
different component passed in, not a subclass.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Protocol

import torch
from torch import Tensor

from ..matching.hungarian import HungarianMatcher
from ..structures import DetectorOutput, Prediction, Target


class ClassLoss(Protocol):
    name: str

    def __call__(self, pred: Prediction, targets: list[Target], indices: list[tuple[Tensor, Tensor]],
                 num_boxes: float) -> Tensor: ...


class BoxLossFn(Protocol):
    """A loss of matched pairs returning named terms: the box loss (``bbox``, ``giou``), the mask loss (``mask``,
    ``dice``)."""

    def __call__(self, pred: Prediction, targets: list[Target], indices: list[tuple[Tensor, Tensor]],
                 num_boxes: float) -> dict[str, Tensor]: ...


@dataclass
class LossOutput:
    """losses: every unweighted term, keyed ``loss_<name><suffix>``; total: the weighted sum to optimise."""

    losses: dict[str, Tensor]
    total: Tensor


class SetCriterion:
    """Matches each prediction set to the ground truth and sums the weighted losses.

    weights: per loss name (``class``, ``bbox``, ``giou``, ``mask``, ``dice``), applied to every set (times the
        set's weight).
    aux_loss: if False, only the final layer (suffix ``""``) and plug-in sets are supervised.
    dn_class_loss, dn_weights: the class loss and weights of sets with a fixed assignment (denoising groups);
        by default the same as the matched sets'. Stable-DINO trains denoising with class weight 1.0 against
        6.0 for matched sets, and can keep the plain focal loss there.
    reduce: sums a tensor over the training processes and returns it with the world size (the GT count is
        averaged over processes, DETR's normaliser); by default this process alone. The composition root
        passes ``engine.distributed.all_reduce_sum``.
    mask_loss: the instance-mask loss (Mask-DINO: point-sampled BCE + dice, ``losses/masks.py``) scored on every
        set beside the box loss; None (box detection) adds nothing.
    """

    def __init__(
        self,
        matcher: HungarianMatcher,
        class_loss: ClassLoss,
        box_loss: BoxLossFn,
        weights: dict[str, float],
        aux_loss: bool = True,
        dn_class_loss: ClassLoss | None = None,
        dn_weights: dict[str, float] | None = None,
        reduce: Callable[[Tensor], tuple[Tensor, int]] | None = None,
        mask_loss: BoxLossFn | None = None,
    ) -> None:
        self.matcher, self.class_loss, self.box_loss, self.mask_loss = matcher, class_loss, box_loss, mask_loss
        self.reduce = reduce or (lambda x: (x, 1))
        self.weights, self.aux_loss = dict(weights), aux_loss
        self.dn_class_loss = dn_class_loss or class_loss
        self.dn_weights = dict(weights) if dn_weights is None else {**weights, **dn_weights}

    def num_boxes(self, targets: list[Target], device: torch.device) -> float:
        """GT count all-reduced over processes, per process, clamped >= 1 (DETR's normaliser)."""
        n = torch.tensor([float(sum(len(t) for t in targets))], device=device)
        total, world = self.reduce(n)
        return max(float(total.item()) / world, 1.0)

    def __call__(self, output: DetectorOutput, targets: list[Target]) -> LossOutput:
        device = output.logits.device
        base = self.num_boxes(targets, device)
        losses: dict[str, Tensor] = {}
        total = output.logits.new_zeros((), dtype=torch.float32)
        for sup in output.supervision():
            if not self.aux_loss and sup.suffix.startswith("_aux"):
                continue
            tgts = [replace(t, labels=torch.zeros_like(t.labels)) for t in targets] if sup.class_agnostic else targets
            # H-DETR's one-to-many branch: the targets themselves are expanded, so the matcher and every loss
            # see an ordinary (longer) GT list and need no knowledge of the branch.
            tgts = [t.repeated(sup.target_repeat) for t in tgts]
            fixed = sup.assignment is not None
            indices = sup.assignment.indices if fixed else self.matcher(sup.prediction, tgts)
            class_loss, weights = (self.dn_class_loss, self.dn_weights) if fixed else (self.class_loss, self.weights)
            norm = base * sup.target_repeat * sup.num_boxes_factor
            terms = {class_loss.name: class_loss(sup.prediction, tgts, indices, norm)}
            terms.update(self.box_loss(sup.prediction, tgts, indices, norm))
            if self.mask_loss is not None:
                terms.update(self.mask_loss(sup.prediction, tgts, indices, norm))
            for name, value in terms.items():
                losses[f"loss_{name}{sup.suffix}"] = value
                total = total + sup.weight * weights.get(name, 1.0) * value
        return LossOutput(losses=losses, total=total)
