"""Property tests (issue #9 item 8, hypothesis): box conversions round-trip; IoU/GIoU bounds, symmetry and
finiteness on degenerate boxes; the Hungarian matcher is optimal against brute force; the losses are finite on
extreme inputs and invariant to the order of queries and of ground-truth boxes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from matchdetr import boxes as B
from matchdetr.config import ModelConfig, set_value
from matchdetr.matching.hungarian import HungarianMatcher
from matchdetr.compose import build_criterion
from matchdetr.structures import DetectorOutput, Prediction, Target

PROPS = settings(max_examples=80, deadline=None)
LOSS_PROPS = settings(max_examples=30, deadline=None)  # each example matches and scores a small set
_coord = st.floats(-1e3, 1e3, allow_nan=False, width=64)


def _boxes(n_min: int = 1, n_max: int = 6, degenerate: bool = True):
    """``[N, 4]`` float64 xyxy boxes; with ``degenerate`` corners may be equal or inverted."""
    def build(rows):
        t = torch.tensor(rows, dtype=torch.float64).reshape(-1, 4)
        if not degenerate:
            t[:, 2:] = t[:, :2] + t[:, 2:].abs() + 1e-3
        return t
    return st.lists(st.tuples(_coord, _coord, _coord, _coord), min_size=n_min, max_size=n_max).map(build)


@PROPS
@given(_boxes(degenerate=False))
def test_conversions_round_trip(xyxy):
    for there, back in ((B.xyxy_to_cxcywh, B.cxcywh_to_xyxy), (B.xyxy_to_xywh, B.xywh_to_xyxy)):
        assert torch.allclose(back(there(xyxy)), xyxy, rtol=1e-12, atol=1e-9)
    cxcywh = B.xyxy_to_cxcywh(xyxy)
    assert torch.allclose(B.xyxy_to_cxcywh(B.cxcywh_to_xyxy(cxcywh)), cxcywh, rtol=1e-12, atol=1e-9)
    assert (cxcywh[:, 2:] > 0).all()


@PROPS
@given(_boxes(), _boxes())
def test_iou_giou_bounds_symmetry_and_finiteness(a, b):
    iou, giou = B.box_iou(a, b), B.generalized_box_iou(a, b)
    assert torch.isfinite(iou).all() and torch.isfinite(giou).all()  # degenerate boxes included: never an assert
    assert ((iou >= 0) & (iou <= 1 + 1e-12)).all()
    assert ((giou >= -1 - 1e-12) & (giou <= 1 + 1e-12)).all()
    assert (giou <= iou + 1e-12).all()
    assert torch.allclose(iou, B.box_iou(b, a).T) and torch.allclose(giou, B.generalized_box_iou(b, a).T)


@PROPS
@given(_boxes(degenerate=False))
def test_a_box_overlaps_itself_fully(a):
    assert torch.allclose(torch.diagonal(B.box_iou(a, a)), torch.ones(len(a), dtype=a.dtype))
    assert torch.allclose(torch.diagonal(B.generalized_box_iou(a, a)), torch.ones(len(a), dtype=a.dtype))


@PROPS
@given(_boxes(degenerate=True))
def test_giou_gradient_is_finite_on_degenerate_boxes(a):
    x = a.clone().requires_grad_(True)
    B.elementwise_generalized_box_iou(x, a.flip(0)).sum().backward()
    assert torch.isfinite(x.grad).all()


# ---------------------------------------------------------------------------------------------- matcher
@st.composite
def _costs(draw):
    q = draw(st.integers(1, 6))
    n = draw(st.integers(1, 6))
    values = st.one_of(st.floats(-100, 100, allow_nan=False, width=32), st.sampled_from([float("nan"), float("inf")]))
    return draw(arrays(np.float32, (q, n), elements=values))


@PROPS
@given(_costs())
def test_hungarian_is_optimal_against_brute_force(cost):
    q, n = cost.shape
    matcher = HungarianMatcher([(1.0, lambda x: torch.from_numpy(cost))])
    pred = Prediction(torch.zeros(1, q, 2), torch.full((1, q, 4), 0.5))
    target = Target(torch.full((n, 4), 0.5), torch.zeros(n, dtype=torch.long), 0, (10, 10), (10, 10))
    (qi, gi), = matcher(pred, [target])
    k = min(q, n)
    assert len(qi) == k and len(set(qi.tolist())) == k and len(set(gi.tolist())) == k  # one-to-one
    big = 1e8  # the matcher's stand-in for NaN/inf: those pairs lose to any finite one
    c = np.nan_to_num(cost.astype(np.float64), nan=big, posinf=big, neginf=-big)
    got = c[qi.numpy(), gi.numpy()].sum()
    if q >= n:
        best = min(sum(c[p[j], j] for j in range(n)) for p in itertools.permutations(range(q), n))
    else:
        best = min(sum(c[i, p[i]] for i in range(q)) for p in itertools.permutations(range(n), q))
    assert got == pytest.approx(best, rel=1e-6, abs=1e-3)


# ----------------------------------------------------------------------------------------------- losses
def _criterion(class_loss: str):
    cfg = ModelConfig()
    set_value(cfg, "loss.class_loss", class_loss)
    cfg.loss.aux_loss = False
    return build_criterion(cfg)


def _sample(seed: int, q: int, n: int, c: int = 4, scale: float = 3.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, q, c, generator=g, dtype=torch.float64) * scale
    boxes = torch.cat([torch.rand(1, q, 2, generator=g) * 0.8 + 0.1, torch.rand(1, q, 2, generator=g) * 0.4 + 0.05], -1).double()
    gt = torch.cat([torch.rand(n, 2, generator=g) * 0.8 + 0.1, torch.rand(n, 2, generator=g) * 0.4 + 0.05], -1).double()
    labels = torch.randint(0, c, (n,), generator=g)
    return logits, boxes, Target(gt, labels, 0, (64, 64), (64, 64))


@pytest.mark.parametrize("class_loss", ["focal", "position_supervised"])
@LOSS_PROPS
@given(seed=st.integers(0, 10_000), q=st.integers(1, 7), n=st.integers(0, 5))
def test_loss_is_invariant_to_query_and_gt_order(class_loss, seed, q, n):
    crit = _criterion(class_loss)
    logits, boxes, tgt = _sample(seed, q, n)
    ref = crit(DetectorOutput(logits, boxes), [tgt]).total
    g = torch.Generator().manual_seed(seed + 1)
    pq, pn = torch.randperm(q, generator=g), torch.randperm(n, generator=g)
    permuted = crit(DetectorOutput(logits[:, pq], boxes[:, pq]), [Target(tgt.boxes[pn], tgt.labels[pn], 0, (64, 64), (64, 64))]).total
    # fp32 inside the losses (by design, see losses/focal.py): equal up to summation order
    assert torch.isfinite(ref) and permuted.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("class_loss", ["focal", "position_supervised"])
@LOSS_PROPS
@given(seed=st.integers(0, 10_000), q=st.integers(1, 6), n=st.integers(1, 4),
       logit=st.sampled_from([0.0, 30.0, -30.0, 1e4, -1e4]), size=st.sampled_from([0.0, 1e-9, 1.0, 5.0]))
def test_loss_is_finite_on_extreme_logits_and_degenerate_boxes(class_loss, seed, q, n, logit, size):
    """Saturated logits and collapsed (w = h = 0) or huge predicted boxes: the loss and its gradient stay finite."""
    crit = _criterion(class_loss)
    logits, boxes, tgt = _sample(seed, q, n)
    logits = torch.full_like(logits, logit).requires_grad_(True)
    boxes = torch.cat([boxes[..., :2], torch.full_like(boxes[..., 2:], size)], -1).requires_grad_(True)
    out = crit(DetectorOutput(logits.float(), boxes.float()), [Target(tgt.boxes.float(), tgt.labels, 0, (64, 64), (64, 64))])
    assert all(torch.isfinite(v) for v in out.losses.values()) and torch.isfinite(out.total)
    out.total.backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(boxes.grad).all()
