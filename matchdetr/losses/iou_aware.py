"""The IoU-aware classification losses: the family stable matching's position-supervised loss belongs to.

Each trains the class score of a matched (query, GT class) entry towards a quality target built from the
IoU ``u`` of the matched box with its GT (detached, as every reference does), and every other entry towards 0.
With ``p = sigmoid(x)``, element-wise (``pos``: matched entry, ``neg``: any other):

- ``varifocal`` (VarifocalNet, Zhang et al. CVPR 2021, eq. 2; RT-DETR / D-FINE apply it to DETR sets):
  ``pos: -u (u log p + (1-u) log(1-p))``, ``neg: -alpha p^gamma log(1-p)``, alpha 0.75, gamma 2, the
  modulating ``p^gamma`` detached (RT-DETR's ``loss_labels_vfl``).
- ``quality_focal`` (QFL, Generalized Focal Loss, Li et al. NeurIPS 2020, eq. 5):
  ``-|y - p|^beta (y log p + (1-y) log(1-p))`` with ``y = u`` on positives and 0 elsewhere, beta 2; the
  modulating factor keeps its gradient (mmdetection's ``quality_focal_loss``). Stable-DINO's eq. 3 is this
  loss with the focal alpha weighting and the target ``u^2`` rescaled (Stable-DINO issues #6, #21).
- ``ia_bce`` (Align-DETR, Cai et al. 2023, eq. 4-5; LW-DETR and RF-DETR's default): target
  ``t = p^alpha u^(1-alpha)`` (detached, clamped to >= 0.01), ``pos: BCE(p, t)``, ``neg: -p^gamma log(1-p)``,
  alpha 0.25, gamma 2, the negatives' ``p^gamma`` with its gradient (LW-DETR's ``ia_bce_loss``).
- ``matchability_aware`` (MAL, DEIM, Huang et al. CVPR 2025, eq. 4):
  ``pos: -(u^gamma log p + (1 - u^gamma) log(1-p))``, ``neg: -p^gamma log(1-p)`` (times ``alpha`` when
  given), gamma 1.5, ``p^gamma`` detached (DEIM's ``loss_labels_mal``).

Every loss is summed over all entries and divided by the GT count, like the focal loss (the references' ``loss
.mean(1).sum() * Q / num_boxes`` is the same sum). Logits are promoted to float32 first and every log is taken
through BCE-with-logits, so saturated logits (|x| = 50) give finite losses and gradients in fp32 and bf16.
Denoising groups and one-to-many branches use the same loss with their own assignment (RT-DETR trains its DN
queries with VFL); the matching cost stays a separate component, so any of these composes with the
position-modulated cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from ..boxes import cxcywh_to_xyxy, elementwise_box_iou
from ..fields import Component, knob
from ..structures import Prediction, Target


def matched_pairs(pred: Prediction, targets: list[Target],
                  indices: list[tuple[Tensor, Tensor]]) -> Iterator[tuple[int, Tensor, Tensor, Tensor, Tensor]]:
    """Per image with matches: ``(b, query indices [K], GT labels [K], IoU [K], pred boxes xyxy [Q, 4])``.

    The IoU is between each matched prediction and its GT, computed without gradient in at least float32,
    clamped to [0, 1].
    """
    dtype = torch.promote_types(pred.boxes.dtype, torch.float32)
    with torch.no_grad():
        boxes = cxcywh_to_xyxy(pred.boxes.detach().to(dtype))
        for b, ((qi, gi), tgt) in enumerate(zip(indices, targets)):
            if qi.numel() == 0:
                continue
            iou = elementwise_box_iou(boxes[b, qi], cxcywh_to_xyxy(tgt.boxes[gi].to(dtype))).clamp(0, 1)
            yield b, qi, tgt.labels[gi], iou, boxes[b]


def iou_targets(pred: Prediction, targets: list[Target],
                indices: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """``(u [B, Q, C] float, positive [B, Q, C] bool)``: the matched IoU at each matched (query, GT class)
    entry, 0 elsewhere, and where the matched entries are."""
    dtype = torch.promote_types(pred.logits.dtype, torch.float32)
    u = torch.zeros_like(pred.logits, dtype=dtype)
    positive = torch.zeros_like(pred.logits, dtype=torch.bool)
    for b, qi, labels, iou, _ in matched_pairs(pred, targets, indices):
        u[b, qi, labels] = iou.to(dtype)
        positive[b, qi, labels] = True
    return u, positive


def _float(logits: Tensor) -> Tensor:
    return logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16/fp16 -> fp32; fp64 stays


def _bce(x: Tensor, t: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(x, t, reduction="none")


def varifocal_loss(logits: Tensor, u: Tensor, positive: Tensor, alpha: float = 0.75, gamma: float = 2.0) -> Tensor:
    """Element-wise VFL: ``u * BCE(p, u)`` on positives, ``alpha p^gamma BCE(p, 0)`` (``p`` detached) on
    negatives. logits, u, positive: ``[..., C]``."""
    x = _float(logits)
    q = torch.where(positive, u.to(x.dtype), torch.zeros_like(x)).detach()
    weight = torch.where(positive, q, alpha * x.detach().sigmoid().pow(gamma))
    return weight * _bce(x, q)


def quality_focal_loss(logits: Tensor, u: Tensor, positive: Tensor, beta: float = 2.0) -> Tensor:
    """Element-wise QFL: ``|y - p|^beta BCE(p, y)``, ``y = u`` on positives, 0 elsewhere."""
    x = _float(logits)
    y = torch.where(positive, u.to(x.dtype), torch.zeros_like(x)).detach()
    return (y - x.sigmoid()).abs().pow(beta) * _bce(x, y)


def ia_bce_loss(logits: Tensor, u: Tensor, positive: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Element-wise IA-BCE: ``BCE(p, t)``, ``t = clamp(p^alpha u^(1-alpha), 0.01)`` detached, on positives;
    ``p^gamma BCE(p, 0)`` on negatives."""
    x = _float(logits)
    p = x.sigmoid()
    t = (p.detach().pow(alpha) * u.to(x.dtype).pow(1 - alpha)).clamp_min(0.01)
    return torch.where(positive, _bce(x, t), p.pow(gamma) * _bce(x, torch.zeros_like(x)))


def matchability_aware_loss(logits: Tensor, u: Tensor, positive: Tensor, gamma: float = 1.5,
                            alpha: float | None = None) -> Tensor:
    """Element-wise MAL: ``BCE(p, u^gamma)`` on positives, ``[alpha] p^gamma BCE(p, 0)`` (``p`` detached) on
    negatives."""
    x = _float(logits)
    q = torch.where(positive, u.to(x.dtype).pow(gamma), torch.zeros_like(x)).detach()
    neg = x.detach().sigmoid().pow(gamma) * (1.0 if alpha is None else alpha)
    return torch.where(positive, torch.ones_like(x), neg) * _bce(x, q)


class IoUAwareClassLoss:
    """``loss_class`` with one of the element-wise losses above: the sum over every (query, class) entry
    divided by the GT count."""

    name = "class"

    def __init__(self, kind: str, **params: float | None) -> None:
        if kind not in IOU_AWARE:
            raise ValueError(f"unknown IoU-aware loss '{kind}'; available: {', '.join(IOU_AWARE)}")
        self.kind, self.fn, self.params = kind, IOU_AWARE[kind], params

    def __call__(self, pred: Prediction, targets: list[Target], indices: list[tuple[Tensor, Tensor]],
                 num_boxes: float) -> Tensor:
        u, positive = iou_targets(pred, targets, indices)
        return self.fn(pred.logits, u, positive, **self.params).sum() / num_boxes

    def __repr__(self) -> str:
        return f"IoUAwareClassLoss({self.kind}, {self.params})"


IOU_AWARE = {
    "varifocal": varifocal_loss,
    "quality_focal": quality_focal_loss,
    "ia_bce": ia_bce_loss,
    "matchability_aware": matchability_aware_loss,
}


@dataclass
class VarifocalLossConfig(Component):
    """Varifocal loss (VarifocalNet eq. 2; RT-DETR, D-FINE)."""

    kind = "varifocal"
    alpha: float = knob(0.75, ge=0)  # the negatives' weight alpha * p^gamma
    gamma: float = knob(2.0, ge=0)  # the negatives' focusing exponent

    def build(self) -> IoUAwareClassLoss:
        return IoUAwareClassLoss("varifocal", alpha=self.alpha, gamma=self.gamma)


@dataclass
class QualityFocalLossConfig(Component):
    """Quality focal loss (Generalized Focal Loss eq. 5)."""

    kind = "quality_focal"
    beta: float = knob(2.0, ge=0)  # modulating exponent |y - p|^beta

    def build(self) -> IoUAwareClassLoss:
        return IoUAwareClassLoss("quality_focal", beta=self.beta)


@dataclass
class IaBceLossConfig(Component):
    """IoU-aware BCE (Align-DETR eq. 4-5; LW-DETR and RF-DETR's default)."""

    kind = "ia_bce"
    alpha: float = knob(0.25, ge=0, le=1)  # target p^alpha * IoU^(1 - alpha)
    gamma: float = knob(2.0, ge=0)  # the negatives' weight p^gamma

    def build(self) -> IoUAwareClassLoss:
        return IoUAwareClassLoss("ia_bce", alpha=self.alpha, gamma=self.gamma)


@dataclass
class MatchabilityAwareLossConfig(Component):
    """Matchability-aware loss (DEIM eq. 4)."""

    kind = "matchability_aware"
    gamma: float = knob(1.5, ge=0)  # target IoU^gamma, negatives' weight p^gamma
    alpha: float | None = knob(None, ge=0)  # the negatives' extra factor; None: none (DEIM's default)

    def build(self) -> IoUAwareClassLoss:
        return IoUAwareClassLoss("matchability_aware", gamma=self.gamma, alpha=self.alpha)
