"""The mask loss against a direct transcription of its formulas at the same points, and in the criterion."""

from __future__ import annotations

import math

import pytest
import torch

from matchdetr.losses.boxes import BoxLoss
from matchdetr.losses.criterion import SetCriterion
from matchdetr.losses.focal import FocalClassLoss
from matchdetr.losses.masks import MaskLoss
from matchdetr.matching.costs import FocalClassCost, L1BoxCost
from matchdetr.matching.hungarian import HungarianMatcher
from matchdetr.matching.mask_costs import DiceCost, MaskBCECost
from matchdetr.ops.point_sample import point_sample_naive
from matchdetr.structures import Assignment, DetectorOutput, Prediction, Supervised, Target

H4, W4 = 5, 6  # mask logits at stride 4 of a 20 x 24 padded batch
SIZES = [(17, 22), (20, 13)]  # the two images, unpadded


def _batch(dtype=torch.float64, seed=0, q=5, c=3):
    g = torch.Generator().manual_seed(seed)
    masks = (torch.randn(2, q, H4, W4, generator=g, dtype=dtype) * 2).requires_grad_(True)
    boxes = torch.rand(2, q, 4, generator=g, dtype=dtype) * 0.4 + 0.2
    pred = Prediction(torch.randn(2, q, c, generator=g, dtype=dtype), boxes, masks)
    targets = [Target(torch.rand(n, 4, generator=g) * 0.4 + 0.2, torch.randint(0, c, (n,), generator=g), i, s, s,
                      masks=torch.rand(n, *s, generator=g) > 0.5) for i, (n, s) in enumerate(zip([2, 3], SIZES))]
    return pred, targets


def _padded(t: Target, dtype) -> torch.Tensor:
    """The release's targets: zero-padded bottom/right to 4x the prediction map."""
    out = torch.zeros(len(t), 4 * H4, 4 * W4, dtype=dtype)
    out[:, : t.size[0], : t.size[1]] = t.masks.to(dtype)
    return out


def test_terms_equal_transcribed_formulas_at_the_same_points():
    pred, targets = _batch()
    indices = [(torch.tensor([1, 4]), torch.tensor([1, 0])), (torch.tensor([0, 2, 3]), torch.tensor([2, 0, 1]))]
    coords = torch.rand(5, 30, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    loss = MaskLoss(num_points=30)
    loss.choose_points = lambda logits: coords  # the same points for the loss and the transcription
    got = loss(pred, targets, indices, num_boxes=4.0)
    ce, dice, k = 0.0, 0.0, 0
    for b, (qi, gi) in enumerate(indices):
        canvas = _padded(targets[b], torch.float64)
        for q, j in zip(qi.tolist(), gi.tolist()):
            x = point_sample_naive(pred.masks[b, q][None, None].detach(), coords[k : k + 1])[0, 0].tolist()
            t = point_sample_naive(canvas[j][None, None], coords[k : k + 1])[0, 0].tolist()
            p = [1 / (1 + math.exp(-v)) for v in x]
            ce += sum(-(ti * math.log(pi) + (1 - ti) * math.log(1 - pi)) for pi, ti in zip(p, t)) / len(p)
            dice += 1 - (2 * sum(pi * ti for pi, ti in zip(p, t)) + 1) / (sum(p) + sum(t) + 1)
            k += 1
    assert set(got) == {"mask", "dice"}
    assert got["mask"].item() == pytest.approx(ce / 4.0, rel=1e-10)
    assert got["dice"].item() == pytest.approx(dice / 4.0, rel=1e-10)
    assert got["mask"].dtype == torch.float64


def test_points_come_from_the_predicted_logits_without_gradient():
    pred, targets = _batch()
    indices = [(torch.tensor([3]), torch.tensor([0])), (torch.tensor([], dtype=torch.long),) * 2]
    loss, seen = MaskLoss(num_points=20, oversample_ratio=2.0, importance_sample_ratio=0.5), []
    choose = loss.choose_points
    loss.choose_points = lambda logits: seen.append(logits) or choose(logits)
    torch.manual_seed(0)
    out = loss(pred, targets, indices, 1.0)
    assert len(seen) == 1 and torch.equal(seen[0], pred.masks[0, 3][None, None])
    assert choose(seen[0]).requires_grad is False and choose(seen[0]).shape == (1, 20, 2)
    (out["mask"] + out["dice"]).backward()
    grad = pred.masks.grad
    assert grad[0, 3].abs().sum() > 0 and grad[0, :3].abs().sum() == 0 and grad[1].abs().sum() == 0


def test_no_matched_pairs_gives_zeros_that_keep_the_graph():
    pred, targets = _batch()
    empty = [(torch.tensor([], dtype=torch.long),) * 2] * 2
    out = MaskLoss(num_points=10)(pred, targets, empty, 1.0)
    assert out["mask"].item() == 0.0 and out["dice"].item() == 0.0
    (out["mask"] + out["dice"]).backward()
    assert torch.equal(pred.masks.grad, torch.zeros_like(pred.masks))


def test_gradcheck_float64_at_fixed_points():
    pred, targets = _batch(q=3)
    indices = [(torch.tensor([0]), torch.tensor([1])), (torch.tensor([2, 1]), torch.tensor([0, 2]))]
    coords = torch.rand(3, 12, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.9 + 0.05
    loss = MaskLoss(num_points=12)
    loss.choose_points = lambda logits: coords

    def terms(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = loss(Prediction(pred.logits, pred.boxes, m), targets, indices, 3.0)
        return out["mask"], out["dice"]

    assert torch.autograd.gradcheck(terms, (pred.masks,))


def test_missing_masks_raise_one_line():
    pred, targets = _batch()
    indices = [(torch.tensor([0]), torch.tensor([0])), (torch.tensor([1]), torch.tensor([1]))]
    for p, t, msg in ((Prediction(pred.logits, pred.boxes), targets, "Prediction.masks"),
                      (pred, [targets[0], Target(targets[1].boxes, targets[1].labels, 1, (9, 9), (9, 9))], "Target.masks")):
        with pytest.raises(ValueError, match=msg) as err:
            MaskLoss(num_points=8)(p, t, indices, 1.0)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="point sampling"):
        MaskLoss(num_points=8, oversample_ratio=0.5)


def test_float32_and_half_logits_are_scored_in_float32():
    pred, targets = _batch(dtype=torch.float32)
    indices = [(torch.tensor([0, 1]), torch.tensor([0, 1])), (torch.tensor([2]), torch.tensor([2]))]
    torch.manual_seed(0)
    full = MaskLoss(num_points=64)(pred, targets, indices, 3.0)
    half = Prediction(pred.logits, pred.boxes, pred.masks.detach().bfloat16())
    out = MaskLoss(num_points=64)(half, targets, indices, 3.0)
    assert full["mask"].dtype == out["mask"].dtype == torch.float32
    assert all(torch.isfinite(v) for v in (*full.values(), *out.values()))


def test_criterion_adds_mask_terms_to_every_set():
    pred, targets = _batch()
    matcher = HungarianMatcher([(2.0, FocalClassCost()), (5.0, L1BoxCost()), (5.0, MaskBCECost(40)), (5.0, DiceCost(40))])
    weights = {"class": 2.0, "bbox": 5.0, "giou": 2.0, "mask": 5.0, "dice": 5.0}
    crit = SetCriterion(matcher, FocalClassLoss(), BoxLoss(), weights, mask_loss=MaskLoss(num_points=40))
    fixed = Assignment([(torch.tensor([0]), torch.tensor([0])), (torch.tensor([1, 2]), torch.tensor([0, 1]))])
    out = DetectorOutput(pred.logits, pred.boxes, aux=[Prediction(pred.logits * 0.5, pred.boxes, pred.masks * 0.5)],
                         extra=[Supervised("_dn", pred, assignment=fixed)], masks=pred.masks)
    torch.manual_seed(0)
    res = crit(out, targets)
    for suffix in ("", "_aux0", "_dn"):
        for name in ("mask", "dice"):
            assert torch.isfinite(res.losses[f"loss_{name}{suffix}"]) and res.losses[f"loss_{name}{suffix}"] > 0
    box_terms = sum(weights[n] * res.losses[f"loss_{n}{s}"] for n in ("class", "bbox", "giou") for s in ("", "_aux0", "_dn"))
    mask_terms = sum(5.0 * res.losses[f"loss_{n}{s}"] for n in ("mask", "dice") for s in ("", "_aux0", "_dn"))
    assert res.total.item() == pytest.approx((box_terms + mask_terms).item(), rel=1e-6)  # the box terms are float32
    res.total.backward()
    assert torch.isfinite(pred.masks.grad).all() and pred.masks.grad.abs().sum() > 0


def test_criterion_without_mask_loss_is_unchanged_by_masks():
    pred, targets = _batch()
    matcher = HungarianMatcher([(2.0, FocalClassCost()), (5.0, L1BoxCost())])
    crit = SetCriterion(matcher, FocalClassLoss(), BoxLoss(), {"class": 2.0, "bbox": 5.0, "giou": 2.0})
    with_masks = crit(DetectorOutput(pred.logits, pred.boxes, masks=pred.masks), targets)
    without = crit(DetectorOutput(pred.logits, pred.boxes), targets)
    assert set(with_masks.losses) == {"loss_class", "loss_bbox", "loss_giou"}
    assert torch.equal(with_masks.total, without.total)
