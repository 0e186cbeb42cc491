"""The IoU-aware class losses (VFL, QFL, IA-BCE, MAL): each against an entry-by-entry transcription of its
paper's formula, what is detached, saturated logits in fp32 and bf16, one-to-many and denoising sets, the
position-modulated cost beside them, and training / predicting on two architectures."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import MICRO
from test_stable_matching import _case, bce, iou

from matchdetr import api
from matchdetr.config import ModelConfig, set_value
from matchdetr.losses.iou_aware import IOU_AWARE, IoUAwareClassLoss
from matchdetr.compose import build_criterion
from matchdetr.structures import Assignment, DetectorOutput, Prediction, Supervised, Target


def vfl(p, u, pos, alpha=0.75, gamma=2.0):  # VarifocalNet eq. 2
    return -u * (u * math.log(p) + (1 - u) * math.log(1 - p)) if pos else -alpha * p**gamma * math.log(1 - p)


def qfl(p, u, pos, beta=2.0):  # GFL eq. 5, y = IoU on the positive, 0 elsewhere
    y = u if pos else 0.0
    return -abs(y - p) ** beta * ((1 - y) * math.log(1 - p) + y * math.log(p))


def ia_bce(p, u, pos, alpha=0.25, gamma=2.0):  # Align-DETR eq. 4-5 (LW-DETR's clamp of t at 0.01)
    if pos:
        return bce(p, max(p**alpha * u ** (1 - alpha), 0.01))
    return -(p**gamma) * math.log(1 - p)


def mal(p, u, pos, gamma=1.5, alpha=None):  # DEIM eq. 4
    if pos:
        q = u**gamma
        return -(q * math.log(p) + (1 - q) * math.log(1 - p))
    return -(1.0 if alpha is None else alpha) * p**gamma * math.log(1 - p)


FORMULA = {"varifocal": vfl, "quality_focal": qfl, "ia_bce": ia_bce, "matchability_aware": mal}
PARAMS = {  # non-default values too, so every parameter reaches the formula
    "varifocal": [{}, {"alpha": 0.5, "gamma": 1.0}],
    "quality_focal": [{}, {"beta": 1.5}],
    "ia_bce": [{}, {"alpha": 0.5, "gamma": 1.0}],
    "matchability_aware": [{}, {"gamma": 2.0, "alpha": 0.75}],
}


def direct(kind, logits, boxes, targets, indices, num_boxes, **params) -> float:
    """Sum over every (image, query, class) entry in Python floats, divided by the GT count."""
    fn, total = FORMULA[kind], 0.0
    for b, (tgt, (qi, gi)) in enumerate(zip(targets, indices)):
        pos = {(i, int(tgt.labels[j])): iou(boxes[b, i].tolist(), tgt.boxes[j].tolist())
               for i, j in zip(qi.tolist(), gi.tolist())}
        for i in range(logits.shape[1]):
            for k in range(logits.shape[2]):
                p = 1 / (1 + math.exp(-float(logits[b, i, k])))
                total += fn(p, pos.get((i, k), 0.0), (i, k) in pos, **params)
    return total / num_boxes


@pytest.mark.parametrize("kind", sorted(IOU_AWARE))
def test_loss_equals_its_formula(kind):
    assert set(FORMULA) == set(IOU_AWARE)
    logits, boxes, targets, indices = _case()
    for params in PARAMS[kind]:
        got = IoUAwareClassLoss(kind, **params)(Prediction(logits, boxes), targets, indices, 4.0)
        assert float(got) == pytest.approx(direct(kind, logits, boxes, targets, indices, 4.0, **params),
                                           rel=1e-9, abs=1e-12), params


@pytest.mark.parametrize("kind", sorted(IOU_AWARE))
def test_no_gradient_reaches_the_boxes(kind):
    logits, boxes, targets, indices = _case()
    logits.requires_grad_(True)
    boxes.requires_grad_(True)
    IoUAwareClassLoss(kind)(Prediction(logits, boxes), targets, indices, 4.0).backward()
    assert boxes.grad is None or torch.count_nonzero(boxes.grad) == 0  # the IoU target is detached
    assert torch.isfinite(logits.grad).all() and torch.count_nonzero(logits.grad) > 0


def test_detached_modulating_factors():
    """VFL and MAL detach the negatives' p^gamma (RT-DETR, DEIM): d/dx = w p. IA-BCE and QFL keep it."""
    x = torch.tensor([[[0.7, -1.2]]], dtype=torch.float64, requires_grad=True)
    box = torch.tensor([[[0.5, 0.5, 0.2, 0.2]]], dtype=torch.float64)
    tgt = [Target(box[0], torch.tensor([1]), 0, (8, 8), (8, 8))]
    empty = [(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))]  # every entry negative
    p = x.detach().sigmoid()
    for kind, weight in (("varifocal", 0.75 * p**2), ("matchability_aware", p**1.5)):
        (g,) = torch.autograd.grad(IoUAwareClassLoss(kind)(Prediction(x, box), tgt, empty, 1.0), x)
        torch.testing.assert_close(g, weight * p)
    for kind in ("ia_bce", "quality_focal"):  # both -p^2 log(1-p) on negatives, gradient through p^2 too
        (g,) = torch.autograd.grad(IoUAwareClassLoss(kind)(Prediction(x, box), tgt, empty, 1.0), x)
        softplus = torch.nn.functional.softplus(x.detach())
        torch.testing.assert_close(g, 2 * p * p * (1 - p) * softplus + p**2 * p)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", sorted(IOU_AWARE))
def test_saturated_logits_stay_finite(kind, dtype):
    _, boxes, targets, indices = _case()
    logits = torch.full((2, 6, 4), 50.0)
    logits[:, ::2] = -50.0
    logits[0, 0, 2] = -50.0  # a matched entry saturated the wrong way
    logits = logits.to(dtype).requires_grad_(True)
    targets = [Target(t.boxes.float(), t.labels, t.image_id, t.size, t.orig_size) for t in targets]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        loss = IoUAwareClassLoss(kind)(Prediction(logits, boxes.to(dtype)), targets, indices, 4.0)
    (grad,) = torch.autograd.grad(loss, logits)
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and torch.isfinite(grad).all()


@pytest.mark.parametrize("kind", sorted(IOU_AWARE))
def test_one_to_many_sets_match_against_the_repeated_ground_truth(kind):
    """H-DETR's branch (``target_repeat=2``): the criterion matches and scores it against the GT list written out
    twice, normalised by twice the GT count; the loss itself knows nothing of the branch."""
    cfg = ModelConfig()
    set_value(cfg, "loss.class_loss", kind)
    logits, boxes, targets, _ = _case()
    logits, boxes = logits.float(), boxes.float()
    targets = [Target(t.boxes.float(), t.labels, t.image_id, t.size, t.orig_size) for t in targets]
    crit = build_criterion(cfg)
    out = DetectorOutput(logits=logits, boxes=boxes, aux=[])
    out.extra.append(Supervised("_o2m", Prediction(logits, boxes), target_repeat=2))
    res = crit(out, targets)
    doubled = [t.repeated(2) for t in targets]
    indices = crit.matcher(Prediction(logits, boxes), doubled)
    assert sum(len(q) for q, _ in indices) == 2 * sum(len(t) for t in targets)
    torch.testing.assert_close(res.losses["loss_class_o2m"],
                               IoUAwareClassLoss(kind)(Prediction(logits, boxes), doubled, indices, 4.0 * 2))


@pytest.mark.parametrize("kind", sorted(IOU_AWARE))
def test_criterion_uses_it_for_matched_and_denoising_sets_beside_the_position_modulated_cost(kind):
    cfg = ModelConfig()
    set_value(cfg, "loss.class_loss", kind)
    set_value(cfg, "matcher.class_cost", "position_modulated")
    _, boxes, targets, indices = _case()
    logits, boxes = torch.randn(2, 6, 4), boxes.float()
    targets = [Target(t.boxes.float(), t.labels, t.image_id, t.size, t.orig_size) for t in targets]
    out = DetectorOutput(logits=logits, boxes=boxes, aux=[])
    out.extra.append(Supervised("_dn", Prediction(logits, boxes), assignment=Assignment(indices)))
    res = build_criterion(cfg)(out, targets)
    direct_dn = IoUAwareClassLoss(kind)(Prediction(logits, boxes), targets, indices, 4.0)
    torch.testing.assert_close(res.losses["loss_class_dn"], direct_dn)
    assert torch.isfinite(res.total)


def test_unknown_class_loss_names_every_choice():
    with pytest.raises(ValueError, match="focal, position_supervised, varifocal, quality_focal, ia_bce, matchability_aware"):
        set_value(ModelConfig(), "loss.class_loss", "varifocall")


@pytest.mark.parametrize("name", ["dino-tiny", "sam-detr-tiny"])
@pytest.mark.parametrize("kind", sorted(IOU_AWARE))
def test_trains_and_predicts(kind, name, synth_dir, tmp_path):
    """Two architectures (DINO: denoising + encoder proposals; SAM-DETR: single scale), through the CLI."""
    from matchdetr.cli import main

    sets = sum((["--set", s] for s in MICRO + ["data.num_workers=0", f"model.loss.class_loss={kind}"]), [])
    assert main(["train", "--model", name, "--data", str(synth_dir), "--out", str(tmp_path / "run"), "--iters", "2",
                 "--batch-size", "2", "--device", "cpu", "--no-progress", *sets]) == 0
    det = api.load(tmp_path / "run")
    assert det.config.model.loss.class_loss.kind == kind
    image = sorted((synth_dir / "val").iterdir())[0]
    out = det.predict([str(image)], threshold=0.0)
    assert out[0]["boxes"].shape[1] == 4 and len(out[0]["scores"]) > 0
