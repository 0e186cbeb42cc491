"""Matcher against brute force; each cost against a direct transcription of its formula."""

import itertools
import math

import pytest
import torch

from matchdetr.boxes import cxcywh_to_xyxy, generalized_box_iou
from matchdetr.matching.costs import FocalClassCost, GIoUCost, L1BoxCost, MatchInputs
from matchdetr.matching.hungarian import HungarianMatcher
from matchdetr.structures import Prediction, Target


def rand_boxes(n, gen):
    cxcy = torch.rand(n, 2, generator=gen) * 0.6 + 0.2
    wh = torch.rand(n, 2, generator=gen) * 0.3 + 0.05
    return torch.cat([cxcy, wh], 1)


def make_inputs(q=5, n=3, c=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return MatchInputs(torch.randn(q, c, generator=gen), rand_boxes(q, gen), torch.randint(0, c, (n,), generator=gen), rand_boxes(n, gen))


def test_focal_cost_formula():
    x = make_inputs()
    cost = FocalClassCost(alpha=0.25, gamma=2.0)(x)
    for i, j in itertools.product(range(5), range(3)):
        p = 1 / (1 + math.exp(-x.logits[i, x.labels[j]].item()))
        pos = 0.25 * (1 - p) ** 2 * -math.log(p + 1e-8)
        neg = 0.75 * p**2 * -math.log(1 - p + 1e-8)
        assert cost[i, j].item() == pytest.approx(pos - neg, rel=1e-5, abs=1e-6)


def test_box_costs_formula():
    x = make_inputs()
    l1, giou = L1BoxCost()(x), GIoUCost()(x)
    for i, j in itertools.product(range(5), range(3)):
        assert l1[i, j].item() == pytest.approx((x.boxes[i] - x.gt_boxes[j]).abs().sum().item(), rel=1e-5)
    ref = -generalized_box_iou(cxcywh_to_xyxy(x.boxes), cxcywh_to_xyxy(x.gt_boxes))
    assert torch.allclose(giou, ref)


@pytest.mark.parametrize("q,n", [(4, 2), (5, 5), (6, 3), (3, 1)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hungarian_equals_brute_force(q, n, seed):
    x = make_inputs(q, n, seed=seed)
    matcher = HungarianMatcher([(2.0, FocalClassCost()), (5.0, L1BoxCost()), (2.0, GIoUCost())])
    pred = Prediction(x.logits[None], x.boxes[None])
    tgt = Target(x.gt_boxes, x.labels, 0, (100, 100), (100, 100))
    (qi, gi), = matcher(pred, [tgt])
    c = matcher.cost_matrix(x)
    got = c[qi, gi].sum().item()
    best = min(sum(c[perm[j], j].item() for j in range(n)) for perm in itertools.permutations(range(q), n))
    assert got == pytest.approx(best, rel=1e-6, abs=1e-6)
    assert len(set(qi.tolist())) == n and sorted(gi.tolist()) == list(range(n))
    assert qi.tolist() == sorted(qi.tolist())


def test_empty_targets_and_repeat_and_nonfinite():
    x = make_inputs(6, 2)
    matcher = HungarianMatcher([(1.0, L1BoxCost())])
    pred = Prediction(x.logits[None].repeat(2, 1, 1), x.boxes[None].repeat(2, 1, 1))
    empty = Target(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 1, (10, 10), (10, 10))
    full = Target(x.gt_boxes, x.labels, 0, (10, 10), (10, 10))
    out = matcher(pred, [empty, full.repeated(3)])
    assert out[0][0].numel() == 0
    assert len(out[1][0]) == 6 and sorted(out[1][1].tolist()) == list(range(6))
    bad = Prediction(torch.full_like(pred.logits, float("nan")), pred.boxes)
    out = HungarianMatcher([(1.0, FocalClassCost())])(bad, [full, full])
    assert len(out[1][0]) == 2
