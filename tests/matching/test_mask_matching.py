"""Mask matching costs against a per-pair double loop of their formulas; the matcher with them against brute force."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from matchdetr.matching.costs import FocalClassCost, L1BoxCost, MatchInputs
from matchdetr.matching.hungarian import HungarianMatcher
from matchdetr.matching.mask_costs import DiceCost, MaskBCECost
from matchdetr.ops.point_sample import point_sample_naive
from matchdetr.structures import Prediction, Target


def _inputs(q=4, n=3, h4=5, w4=6, size=(17, 22), seed=0, dtype=torch.float64):
    """Mask logits at stride 4 over a 20 x 24 padded batch; GT masks of a 17 x 22 image inside it."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.randn(q, h4, w4, generator=g, dtype=dtype) * 2
    gt = torch.rand(n, *size, generator=g) > 0.6
    boxes = torch.rand(q, 4, generator=g, dtype=dtype) * 0.3 + 0.2
    gt_boxes = torch.rand(n, 4, generator=g, dtype=dtype) * 0.3 + 0.2
    return MatchInputs(torch.randn(q, 3, generator=g, dtype=dtype), boxes, torch.randint(0, 3, (n,), generator=g), gt_boxes,
                       masks, gt)


def _reference_points(x: MatchInputs, num_points: int, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The release's recipe written out: the same uniform draw, GT masks explicitly zero-padded bottom/right to
    4x the prediction map, both sampled by the naive bilinear loop."""
    torch.set_rng_state(state)
    coords = torch.rand(1, num_points, 2, dtype=x.masks.dtype)
    h4, w4 = x.masks.shape[-2:]
    canvas = torch.zeros(x.gt_masks.shape[0], 4 * h4, 4 * w4, dtype=x.masks.dtype)
    canvas[:, : x.gt_masks.shape[1], : x.gt_masks.shape[2]] = x.gt_masks.to(x.masks.dtype)
    pred = point_sample_naive(x.masks[None], coords)[0]
    gt = point_sample_naive(canvas[None], coords)[0]
    return pred, gt


def test_costs_equal_per_pair_formulas():
    x = _inputs()
    state = torch.get_rng_state()
    bce, dice = MaskBCECost(50)(x), DiceCost(50)(x)
    pred, gt = _reference_points(x, 50, state)
    assert bce.shape == dice.shape == (4, 3)
    for i, j in itertools.product(range(4), range(3)):
        ps = [1 / (1 + math.exp(-v)) for v in pred[i].tolist()]
        ts = gt[j].tolist()
        ce = sum(-(t * math.log(p) + (1 - t) * math.log(1 - p)) for p, t in zip(ps, ts)) / len(ps)
        d = 1 - (2 * sum(p * t for p, t in zip(ps, ts)) + 1) / (sum(ps) + sum(ts) + 1)
        assert bce[i, j].item() == pytest.approx(ce, rel=1e-10)
        assert dice[i, j].item() == pytest.approx(d, rel=1e-10)


def test_both_costs_share_one_draw_per_image():
    x = _inputs()
    torch.manual_seed(1)
    MaskBCECost(40)(x)
    DiceCost(40)(x)
    after_both = torch.get_rng_state()
    torch.manual_seed(1)
    torch.rand(1, 40, 2, dtype=torch.float64)
    assert torch.equal(after_both, torch.get_rng_state())
    assert list(x.samples) == [40]
    y = _inputs()  # a new image (new MatchInputs) draws again
    MaskBCECost(40)(y)
    assert not torch.equal(after_both, torch.get_rng_state())


def test_costs_without_masks_or_points_raise_one_line():
    x = _inputs()
    with pytest.raises(ValueError, match="num_points >= 1"):
        MaskBCECost(0)(x)
    for cost in (MaskBCECost(8), DiceCost(8)):
        for missing in ({"masks": None}, {"gt_masks": None}):
            given = {"masks": x.masks, "gt_masks": x.gt_masks, **missing}
            bare = MatchInputs(x.logits, x.boxes, x.labels, x.gt_boxes, **given)
            with pytest.raises(ValueError, match="mask matching cost needs") as err:
                cost(bare)
            assert "\n" not in str(err.value)


def _prediction_and_target(x: MatchInputs) -> tuple[Prediction, Target]:
    return (Prediction(x.logits[None], x.boxes[None], x.masks[None]),
            Target(x.gt_boxes, x.labels, 0, (17, 22), tuple(x.gt_masks.shape[1:]), masks=x.gt_masks))


@pytest.mark.parametrize("q,n", [(4, 2), (5, 5), (6, 3)])
@pytest.mark.parametrize("seed", [0, 1])
def test_matcher_with_mask_costs_equals_brute_force(q, n, seed):
    x = _inputs(q, n, seed=seed, dtype=torch.float32)
    matcher = HungarianMatcher([(2.0, FocalClassCost()), (5.0, L1BoxCost()), (5.0, MaskBCECost(64)), (5.0, DiceCost(64))])
    pred, tgt = _prediction_and_target(x)
    state = torch.get_rng_state()
    (qi, gi), = matcher(pred, [tgt])
    torch.set_rng_state(state)  # the matcher's MatchInputs drew these points: draw them again for the check
    c = matcher.cost_matrix(MatchInputs(x.logits, x.boxes, x.labels, x.gt_boxes, x.masks, x.gt_masks))
    got = c[qi, gi].sum().item()
    best = min(sum(c[perm[j], j].item() for j in range(n)) for perm in itertools.permutations(range(q), n))
    assert got == pytest.approx(best, rel=1e-6, abs=1e-6)
    assert sorted(gi.tolist()) == list(range(n)) and qi.tolist() == sorted(qi.tolist())


def test_mask_costs_alone_recover_the_masks_owners():
    # each query predicts (the logit form of) one GT mask: mask costs alone must match every query to its mask
    g = torch.Generator().manual_seed(3)
    gt = torch.zeros(3, 16, 16, dtype=torch.bool)
    gt[0, :8, :8], gt[1, 8:, :], gt[2, :8, 8:] = True, True, True
    owner = torch.tensor([2, 0, 1, 0])  # query -> GT; query 3 is a worse copy of GT 0
    logits = (gt[owner].float() * 2 - 1)[:, ::4, ::4] * 6
    logits[3] = logits[3] * 0.2 + torch.randn(4, 4, generator=g)
    pred = Prediction(torch.zeros(1, 4, 2), torch.full((1, 4, 4), 0.5), logits[None])
    tgt = Target(torch.full((3, 4), 0.5), torch.zeros(3, dtype=torch.long), 0, (16, 16), (16, 16), masks=gt)
    torch.manual_seed(0)
    (qi, gi), = HungarianMatcher([(1.0, MaskBCECost(500)), (1.0, DiceCost(500))])(pred, [tgt])
    assert qi.tolist() == [0, 1, 2] and gi.tolist() == [2, 0, 1]


def test_box_matching_sees_no_masks():
    x = _inputs(dtype=torch.float32)
    seen = []
    matcher = HungarianMatcher([(1.0, lambda inp: seen.append(inp) or L1BoxCost()(inp))])
    matcher(Prediction(x.logits[None], x.boxes[None]), [Target(x.gt_boxes, x.labels, 0, (9, 9), (9, 9))])
    assert seen[0].masks is None and seen[0].gt_masks is None
