"""Focal loss and the criterion against direct transcriptions of their formulas."""

import math

import pytest
import torch

from matchdetr.boxes import cxcywh_to_xyxy, elementwise_generalized_box_iou
from matchdetr.losses.boxes import BoxLoss
from matchdetr.losses.criterion import SetCriterion
from matchdetr.losses.focal import FocalClassLoss, sigmoid_focal_loss
from matchdetr.matching.costs import FocalClassCost, GIoUCost, L1BoxCost
from matchdetr.matching.hungarian import HungarianMatcher
from matchdetr.structures import Assignment, DetectorOutput, Prediction, Supervised, Target


def test_sigmoid_focal_loss_formula():
    logits = torch.tensor([[-3.0, 0.0, 2.0], [5.0, -1.0, 0.5]])
    t = torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    got = sigmoid_focal_loss(logits, t, 0.25, 2.0)
    for idx in [(i, j) for i in range(2) for j in range(3)]:
        p = 1 / (1 + math.exp(-logits[idx].item()))
        if t[idx] == 1:
            ref = -0.25 * (1 - p) ** 2 * math.log(p)
        else:
            ref = -0.75 * p**2 * math.log(1 - p)
        assert got[idx].item() == pytest.approx(ref, rel=1e-5)


def test_focal_finite_for_saturated_logits():
    logits = torch.tensor([[-200.0, 200.0]], requires_grad=True)
    loss = sigmoid_focal_loss(logits, torch.tensor([[1.0, 0.0]])).sum()
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def _toy(seed=0, b=2, q=6, c=3):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, q, c, generator=gen, requires_grad=True)
    boxes = torch.rand(b, q, 4, generator=gen) * 0.4 + 0.2
    boxes.requires_grad_(True)
    targets = [Target(torch.rand(n, 4, generator=gen) * 0.4 + 0.2, torch.randint(0, c, (n,), generator=gen), i, (50, 50), (50, 50))
               for i, n in enumerate([2, 3][:b])]
    return logits, boxes, targets


def test_criterion_matches_manual_transcription():
    logits, boxes, targets = _toy()
    matcher = HungarianMatcher([(2.0, FocalClassCost()), (5.0, L1BoxCost()), (2.0, GIoUCost())])
    crit = SetCriterion(matcher, FocalClassLoss(), BoxLoss(), {"class": 2.0, "bbox": 5.0, "giou": 2.0})
    out = DetectorOutput(logits=logits, boxes=boxes)
    res = crit(out, targets)
    indices = matcher(Prediction(logits, boxes), targets)
    num = 5.0
    cls, l1, giou = 0.0, 0.0, 0.0
    for b, (qi, gi) in enumerate(indices):
        onehot = torch.zeros(6, 3)
        onehot[qi, targets[b].labels[gi]] = 1
        cls += sigmoid_focal_loss(logits[b], onehot).sum()
        l1 += (boxes[b, qi] - targets[b].boxes[gi]).abs().sum()
        giou += (1 - elementwise_generalized_box_iou(cxcywh_to_xyxy(boxes[b, qi]), cxcywh_to_xyxy(targets[b].boxes[gi]))).sum()
    assert res.losses["loss_class"].item() == pytest.approx(cls.item() / num, rel=1e-5)
    assert res.losses["loss_bbox"].item() == pytest.approx(l1.item() / num, rel=1e-5)
    assert res.losses["loss_giou"].item() == pytest.approx(giou.item() / num, rel=1e-5)
    total = 2 * cls / num + 5 * l1 / num + 2 * giou / num
    assert res.total.item() == pytest.approx(total.item(), rel=1e-5)
    res.total.backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(boxes.grad).all()


def test_criterion_loops_over_aux_and_plugin_sets():
    logits, boxes, targets = _toy()
    matcher = HungarianMatcher([(1.0, L1BoxCost())])
    crit = SetCriterion(matcher, FocalClassLoss(), BoxLoss(), {"class": 1.0, "bbox": 1.0, "giou": 1.0})
    fixed = Assignment([(torch.tensor([0, 1]), torch.tensor([0, 1])), (torch.tensor([2, 3, 4]), torch.tensor([0, 1, 2]))])
    out = DetectorOutput(logits=logits, boxes=boxes, aux=[Prediction(logits, boxes)],
                         extra=[Supervised("_dn", Prediction(logits, boxes), assignment=fixed, num_boxes_factor=2.0),
                                Supervised("_o2m", Prediction(logits, boxes), target_repeat=2)])
    res = crit(out, targets)
    assert set(res.losses) == {f"loss_{n}{s}" for n in ("class", "bbox", "giou") for s in ("", "_aux0", "_dn", "_o2m")}
    assert res.losses["loss_class"].item() == pytest.approx(res.losses["loss_class_aux0"].item())
    # fixed assignment: L1 of the given pairs over num_boxes * factor
    l1 = sum((boxes[b, q] - targets[b].boxes[g]).abs().sum() for b, (q, g) in enumerate(fixed.indices))
    assert res.losses["loss_bbox_dn"].item() == pytest.approx(l1.item() / (5 * 2.0), rel=1e-5)
    no_aux = SetCriterion(matcher, FocalClassLoss(), BoxLoss(), {}, aux_loss=False)(out, targets)
    assert "loss_class_aux0" not in no_aux.losses and "loss_class_dn" in no_aux.losses


def test_criterion_with_no_ground_truth():
    logits, boxes, _ = _toy()
    empty = [Target(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), i, (9, 9), (9, 9)) for i in range(2)]
    crit = SetCriterion(HungarianMatcher([(1.0, L1BoxCost())]), FocalClassLoss(), BoxLoss(), {})
    res = crit(DetectorOutput(logits=logits, boxes=boxes), empty)
    assert torch.isfinite(res.total)
    res.total.backward()
    assert res.losses["loss_bbox"].item() == 0.0
