"""Position-supervised classification loss (Stable-DINO, Liu et al. 2023, sec 2.2, eq. 3).

A focal loss whose positive target is a function of the matched box's IoU alone:

    L_cls = sum_pos alpha |t - p|^gamma BCE(p, t) + sum_neg (1 - alpha) p^gamma BCE(p, 0),   t = rescale(f1(s))

where ``s`` is the IoU between a matched prediction and its GT, ``t`` is detached, and every (query, class)
entry other than a matched query's GT class is a negative. Supervising positives with position only removes
the "multi-optimisation path" that makes matching unstable across decoder layers (sec 2.4).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..boxes import box_iou, cxcywh_to_xyxy
from ..fields import Component, knob
from ..structures import Prediction, Target
from .focal import one_hot_targets
from .iou_aware import matched_pairs

# f1(s, p) -> target; s = IoU, p = the detached class probability (only the ablation forms read it)
PositionFunction = Callable[[Tensor, Tensor], Tensor]

_POWER = re.compile(r"^s\^([0-9.]+)(?:\*p\^([0-9.]+))?$")
RESCALES = ("one", "max_iou", "none")


def position_function(spec: str) -> PositionFunction:
    """Parse an ``f1`` of paper table 7.

    ``s`` or ``s^a``: IoU to a power (``s^2`` is the default, table 7 row 3); ``s^a*p^b``: times the class
    probability, which the paper shows hurts (rows 5-7) and keeps as an ablation; ``exp``: ``(e^s - 1)/(e - 1)``
    (row 8); ``sin``: ``sin(s pi / 2)`` (row 9).
    """
    text = spec.replace(" ", "")
    if text == "s":
        text = "s^1"
    if text == "exp":
        return lambda s, p: (s.exp() - 1) / (math.e - 1)
    if text == "sin":
        return lambda s, p: torch.sin(s * math.pi / 2)
    m = _POWER.match(text)
    if not m:
        raise ValueError(f"f1={spec!r} is not one of: s, s^a, s^a*p^b, exp, sin")
    a, b = float(m.group(1)), float(m.group(2) or 0.0)
    if b == 0.0:
        return lambda s, p: s.pow(a)
    return lambda s, p: s.pow(a) * p.pow(b)


def rescale_targets(t: Tensor, mode: str, max_iou: Tensor | None = None) -> Tensor:
    """Rescale one image's targets ``t [K]`` (paper sec 2.2, the epsilon of ``f1 = eps(s^2)``).

    ``one``: multiply by ``max(1 / max(t), 1)`` so the largest target is 1.0 (the release's default).
    ``max_iou``: multiply by ``max(m / max(t), 1)``, ``m`` the largest IoU between any prediction and any GT of
    the image (``max_iou``, a 0-d tensor). ``none``: unchanged. All-zero targets stay zero.
    """
    if mode == "none" or t.numel() == 0:
        return t
    top = t.max()
    if mode == "one":
        ceiling = torch.ones_like(top)
    elif mode == "max_iou":
        if max_iou is None:
            raise ValueError("rescale='max_iou' needs the image's largest IoU")
        ceiling = max_iou.to(t)
    else:
        raise ValueError(f"position-supervised rescale={mode!r}; valid: {', '.join(RESCALES)}")
    scale = torch.where(top > 0, (ceiling / top.clamp_min(1e-12)).clamp_min(1.0), torch.ones_like(top))
    return t * scale


def position_supervised_focal(logits: Tensor, targets: Tensor, positive: Tensor, alpha: float = 0.25,
                              gamma: float = 2.0) -> Tensor:
    """Element-wise eq. 3 from logits (BCE-with-logits, so logits of +-50 stay finite in fp32 and bf16).

    logits, targets: ``[..., C]``; positive: bool, same shape, True on matched (query, GT class) entries, whose
    target is ``targets``; every other entry is a negative with target 0.
    """
    x = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16/fp16 -> fp32; fp64 stays
    p = x.sigmoid()
    t = targets.to(x.dtype).detach()
    pos = alpha * (t - p).abs().pow(gamma) * F.binary_cross_entropy_with_logits(x, t, reduction="none")
    neg = (1 - alpha) * p.pow(gamma) * F.binary_cross_entropy_with_logits(x, torch.zeros_like(x), reduction="none")
    return torch.where(positive, pos, neg)


class PositionSupervisedLoss:
    """The classification component of stable matching: ``loss_class`` computed with eq. 3.

    f1: :func:`position_function` spec; rescale: ``one | max_iou | none``.
    """

    name = "class"

    def __init__(self, f1: str = "s^2", rescale: str = "one", alpha: float = 0.25, gamma: float = 2.0) -> None:
        if rescale not in RESCALES:
            raise ValueError(f"position-supervised rescale={rescale!r}; valid: {', '.join(RESCALES)}")
        self.f1, self.rescale = position_function(f1), rescale
        self.alpha, self.gamma = alpha, gamma

    @torch.no_grad()
    def targets(self, pred: Prediction, targets: list[Target],
                indices: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        """``(t [B, Q, C] float, positive [B, Q, C] bool)``: the detached eq. 3 target of every entry."""
        positive = one_hot_targets(pred.logits, targets, indices) > 0
        dtype = torch.promote_types(pred.logits.dtype, torch.float32)
        t = torch.zeros_like(pred.logits, dtype=dtype)
        prob = pred.logits.detach().to(dtype).sigmoid()
        for b, qi, lab, s, boxes in matched_pairs(pred, targets, indices):
            value = self.f1(s.to(dtype), prob[b, qi, lab])
            max_iou = None
            if self.rescale == "max_iou":
                gt = cxcywh_to_xyxy(targets[b].boxes.to(boxes.dtype))
                max_iou = box_iou(boxes, gt).max()
            t[b, qi, lab] = rescale_targets(value, self.rescale, max_iou)
        return t, positive

    def __call__(self, pred: Prediction, targets: list[Target], indices: list[tuple[Tensor, Tensor]],
                 num_boxes: float) -> Tensor:
        t, positive = self.targets(pred, targets, indices)
        return position_supervised_focal(pred.logits, t, positive, self.alpha, self.gamma).sum() / num_boxes


@dataclass
class PositionSupervisedLossConfig(Component):
    """Stable matching's classification loss (Stable-DINO eq. 3): the positives' target is a function of the
    matched IoU alone."""

    kind = "position_supervised"
    # f1 of table 7: s^a (a > 0; s^2 is the paper's default), s^a*p^b (an ablation that hurts), exp, sin
    f1: str = "s^2"
    rescale: str = knob("one", choices=RESCALES)  # one: largest target per image -> 1 (the release) | max_iou | none
    alpha: float = knob(0.25, ge=0, le=1)  # focal alpha of eq. 3
    gamma: float = knob(2.0, ge=0)  # focal gamma of eq. 3: |t - p|^gamma on positives, p^gamma on negatives

    def validate(self) -> None:
        position_function(self.f1)  # a ValueError naming the valid forms

    def build(self) -> PositionSupervisedLoss:
        return PositionSupervisedLoss(self.f1, self.rescale, self.alpha, self.gamma)
