"""Stable matching (Stable-DINO): the position-supervised loss against a transcription of eq. 3, the
position-modulated cost against eq. 4, numerical safety, memory fusion, and the presets' parameter counts."""

from __future__ import annotations

import math

import pytest
import torch

import matchdetr
from matchdetr.boxes import cxcywh_to_xyxy
from matchdetr.config import ModelConfig
from matchdetr.losses.focal import FocalLossConfig
from matchdetr.losses.position_supervised import PositionSupervisedLossConfig
from matchdetr.losses.criterion import SetCriterion
from matchdetr.losses.position_supervised import PositionSupervisedLoss, position_function
from matchdetr.matching.costs import MatchInputs, PositionModulatedCost
from matchdetr.compose import build_criterion
from matchdetr.structures import Assignment, DetectorOutput, Prediction, Supervised, Target

ALPHA, GAMMA = 0.25, 2.0
F1 = {  # table 7, written out independently of the parser
    "s^0.5": lambda s, p: s**0.5, "s": lambda s, p: s, "s^2": lambda s, p: s**2, "s^3": lambda s, p: s**3,
    "exp": lambda s, p: (math.exp(s) - 1) / (math.e - 1), "sin": lambda s, p: math.sin(s * math.pi / 2),
    "s^1*p^0.25": lambda s, p: s * p**0.25, "s^1*p^1": lambda s, p: s * p, "s^2*p^1": lambda s, p: s**2 * p,
}


def iou(a, b) -> float:
    """IoU of two cxcywh boxes, from the definition."""
    ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    iw, ih = max(0.0, min(ax1, bx1) - max(ax0, bx0)), max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def giou(a, b) -> float:
    ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    iw, ih = max(0.0, min(ax1, bx1) - max(ax0, bx0)), max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    hull = (max(ax1, bx1) - min(ax0, bx0)) * (max(ay1, by1) - min(ay0, by0))
    return inter / union - (hull - union) / hull


def bce(p: float, t: float) -> float:
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def eq3(logits, boxes, targets, indices, f1, rescale, num_boxes) -> float:
    """Paper eq. 3 with alpha, entry by entry in Python floats; targets rescaled per image (sec 2.2)."""
    total = 0.0
    for b, (tgt, (qi, gi)) in enumerate(zip(targets, indices)):
        q, c = logits.shape[1:]
        p = [[1 / (1 + math.exp(-float(logits[b, i, k]))) for k in range(c)] for i in range(q)]
        pos = {}
        for i, j in zip(qi.tolist(), gi.tolist()):
            lab = int(tgt.labels[j])
            pos[(i, lab)] = f1(iou(boxes[b, i].tolist(), tgt.boxes[j].tolist()), p[i][lab])
        if pos and rescale != "none":
            top = max(pos.values())
            ceiling = 1.0 if rescale == "one" else max(
                iou(boxes[b, i].tolist(), tgt.boxes[j].tolist()) for i in range(q) for j in range(len(tgt)))
            scale = max(ceiling / top, 1.0) if top > 0 else 1.0
            pos = {k: v * scale for k, v in pos.items()}
        for i in range(q):
            for k in range(c):
                if (i, k) in pos:
                    t = pos[(i, k)]
                    total += ALPHA * abs(t - p[i][k]) ** GAMMA * bce(p[i][k], t)
                else:
                    total += (1 - ALPHA) * p[i][k] ** GAMMA * bce(p[i][k], 0.0)
    return total / num_boxes


def _case():
    """Two images; image 0 has two GTs of the SAME class (2) plus one of class 0."""
    g = torch.Generator().manual_seed(0)
    q, c = 6, 4
    logits = torch.randn(2, q, c, generator=g, dtype=torch.float64) * 2
    centre = torch.rand(2, q, 2, generator=g, dtype=torch.float64) * 0.5 + 0.25
    wh = torch.rand(2, q, 2, generator=g, dtype=torch.float64) * 0.3 + 0.1
    boxes = torch.cat((centre, wh), -1)
    targets = [
        Target(torch.tensor([[0.4, 0.4, 0.3, 0.3], [0.6, 0.5, 0.2, 0.4], [0.5, 0.6, 0.25, 0.2]], dtype=torch.float64),
               torch.tensor([2, 2, 0]), 0, (64, 64), (64, 64)),
        Target(torch.tensor([[0.5, 0.5, 0.4, 0.3]], dtype=torch.float64), torch.tensor([1]), 1, (64, 64), (64, 64)),
    ]
    indices = [(torch.tensor([0, 3, 5]), torch.tensor([1, 0, 2])), (torch.tensor([2]), torch.tensor([0]))]
    return logits, boxes, targets, indices


@pytest.mark.parametrize("rescale", ["one", "max_iou", "none"])
@pytest.mark.parametrize("f1", sorted(F1))
def test_position_supervised_loss_equals_eq3(f1, rescale):
    logits, boxes, targets, indices = _case()
    loss = PositionSupervisedLoss(f1, rescale, ALPHA, GAMMA)(Prediction(logits, boxes), targets, indices, 4.0)
    expected = eq3(logits, boxes, targets, indices, F1[f1], rescale, 4.0)
    assert float(loss) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_position_target_is_detached_and_rescaled_to_one():
    logits, boxes, targets, indices = _case()
    logits.requires_grad_(True)
    boxes.requires_grad_(True)
    psl = PositionSupervisedLoss("s^2", "one")
    t, positive = psl.targets(Prediction(logits, boxes), targets, indices)
    assert not t.requires_grad and positive.sum() == 4
    assert t[0].max() == pytest.approx(1.0) and t[1].max() == pytest.approx(1.0)  # largest target per image is 1
    psl(Prediction(logits, boxes), targets, indices, 4.0).backward()
    assert boxes.grad is None or torch.count_nonzero(boxes.grad) == 0  # no gradient through the target


def test_position_function_rejects_unknown():
    with pytest.raises(ValueError, match=r"f1='log\(s\)' is not one of"):
        position_function("log(s)")


def eq4(logits, boxes, labels, gt, power) -> torch.Tensor:
    """Paper eq. 4 per (query, GT) pair in Python floats, s' = (GIoU + 1)/2 normalised by the image's max."""
    q, n = logits.shape[0], len(labels)
    s = [[(giou(boxes[i].tolist(), gt[j].tolist()) + 1) / 2 for j in range(n)] for i in range(q)]
    top = max(max(row) for row in s)
    cost = torch.zeros(q, n, dtype=torch.float64)
    for i in range(q):
        for j in range(n):
            p = 1 / (1 + math.exp(-float(logits[i, labels[j]])))
            pt = p * (s[i][j] / top) ** power
            cost[i, j] = ALPHA * (1 - pt) ** GAMMA * -math.log(pt + 1e-8) - (1 - ALPHA) * pt**GAMMA * -math.log(1 - pt + 1e-8)
    return cost


@pytest.mark.parametrize("power", [0.0, 0.25, 0.5, 1.0, 2.0])
def test_position_modulated_cost_equals_eq4(power):
    logits, boxes, targets, _ = _case()
    tgt = targets[0]  # two GTs of class 2: each gets its own column
    x = MatchInputs(logits[0], boxes[0], tgt.labels, tgt.boxes)
    got = PositionModulatedCost(ALPHA, GAMMA, power)(x)
    want = eq4(logits[0], boxes[0], tgt.labels.tolist(), tgt.boxes, power)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    if power > 0:  # same class, different boxes: the two columns differ
        assert not torch.allclose(got[:, 0], got[:, 1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_saturated_logits_stay_finite(dtype):
    _, boxes, targets, indices = _case()
    logits = torch.full((2, 6, 4), 50.0)
    logits[:, ::2] = -50.0
    logits[0, 0, 2] = -50.0  # a matched entry saturated the wrong way
    logits = logits.to(dtype).requires_grad_(True)
    boxes = boxes.float()
    for f1 in F1:
        for rescale in ("one", "max_iou"):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                loss = PositionSupervisedLoss(f1, rescale)(Prediction(logits, boxes), targets, indices, 4.0)
            (grad,) = torch.autograd.grad(loss, logits)
            assert torch.isfinite(loss) and torch.isfinite(grad).all(), (f1, rescale)
    for power in (0.0, 0.5, 2.0):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            cost = PositionModulatedCost(power=power)(MatchInputs(logits[0].detach().float(), boxes[0],
                                                                 targets[0].labels, targets[0].boxes.float()))
        assert torch.isfinite(cost).all()


def test_denoising_sets_use_their_own_class_loss_and_weight():
    cfg = ModelConfig()
    cfg.loss.class_loss, cfg.loss.class_weight, cfg.loss.dn_class_weight = PositionSupervisedLossConfig(), 6.0, 1.0
    _, boxes, targets, indices = _case()
    logits = torch.randn(2, 6, 4)
    boxes = boxes.float()
    targets = [Target(t.boxes.float(), t.labels, t.image_id, t.size, t.orig_size) for t in targets]
    out = DetectorOutput(logits=logits, boxes=boxes, aux=[])
    out.extra.append(Supervised("_dn", Prediction(logits, boxes), assignment=Assignment(indices)))
    for flag in (True, False):  # denoising supervised by the position-supervised loss too, or by the focal loss
        cfg.loss.dn_class_loss = None if flag else FocalLossConfig()
        crit = build_criterion(cfg)
        res = crit(out, targets)
        dn_cls = res.losses["loss_class_dn"]
        psl = PositionSupervisedLoss()(Prediction(logits, boxes), targets, indices, 4.0)
        assert torch.isclose(dn_cls, psl) == flag
        expect = 6.0 * res.losses["loss_class"] + 1.0 * dn_cls + sum(
            w * res.losses[f"loss_{n}{s}"] for n, w in (("bbox", 5.0), ("giou", 2.0)) for s in ("", "_dn"))
        assert torch.isclose(res.total, expect)
    assert isinstance(crit, SetCriterion)


def _count(name: str) -> int:
    return sum(p.numel() for p in matchdetr.build(name, num_classes=91).parameters())


def test_stable_dino_adds_exactly_the_dense_fusion_parameters():
    assert _count("stable-dino-4scale-r50") - _count("dino-4scale-r50") == 459_520  # Linear(7*256->256) + LN


@pytest.mark.parametrize("name,extra", [("stable-dino-5scale-r50", 459_520), ("stable-deformable-detr-r50", 459_520),
                                        ("stable-dab-deformable-detr-r50", 459_520),
                                        ("stable-h-deformable-detr-r50", 459_520), ("stable-sam-detr-plus-plus-r50", 0)])
def test_stable_parameter_counts(name, extra):
    assert _count(name) - _count(name.removeprefix("stable-")) == extra


@pytest.mark.parametrize("name", ["stable-deformable-detr-r50", "stable-dab-deformable-detr-r50",
                                  "stable-h-deformable-detr-r50", "stable-dino-5scale-r50"])
def test_every_stable_preset_is_its_baseline_plus_the_stable_components(name):
    from matchdetr import presets

    stable, base = presets.get(name), presets.get(name.removeprefix("stable-"))
    assert stable.model.loss.class_loss.kind == "position_supervised"
    assert stable.model.matcher.class_cost.kind == "position_modulated"
    assert stable.model.memory_fusion.kind == "dense" and stable.model.postprocess.nms_iou == 0.8
    stable.model.loss, stable.model.matcher, stable.model.postprocess = base.model.loss, base.model.matcher, base.model.postprocess
    stable.model.memory_fusion, stable.preset = base.model.memory_fusion, base.preset
    assert stable == base  # nothing else differs


@pytest.mark.parametrize("name", ["stable-sam-detr-plus-plus-r50", "stable-sam-detr-plus-plus-tiny"])
def test_combined_preset_is_sam_detr_plus_plus_with_stable_loss_and_cost(name):
    from matchdetr import presets

    combined, base = presets.get(name), presets.get(name.removeprefix("stable-"))
    assert combined.model.loss.class_loss.kind == "position_supervised"
    assert combined.model.matcher.class_cost.kind == "position_modulated"
    combined.model.loss, combined.model.matcher, combined.preset = base.model.loss, base.model.matcher, base.preset
    assert combined == base
