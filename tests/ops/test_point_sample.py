"""point_sample against the naive bilinear loop, gradcheck, the padded-canvas shortcut, and importance sampling
against a per-mask sort of the same random draws."""

from __future__ import annotations

import pytest
import torch

from matchdetr.ops.point_sample import point_sample, point_sample_naive, point_sample_on_canvas
from matchdetr.ops.uncertain_points import point_budget, uncertain_point_coords


def _coords(b: int, p: int, seed: int = 0) -> torch.Tensor:
    """Random points plus the corners, the edges and points just outside the half-pixel border."""
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(b, p, 2, generator=g, dtype=torch.float64)
    pts[:, :4] = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.999, 0.001]], dtype=torch.float64)
    return pts


@pytest.mark.parametrize("align_corners", [False, True])
def test_matches_naive_loop(align_corners):
    torch.manual_seed(0)
    maps = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    coords = _coords(2, 11)
    fast = point_sample(maps, coords, align_corners)
    assert fast.shape == (2, 3, 11)
    torch.testing.assert_close(fast, point_sample_naive(maps, coords, align_corners), rtol=1e-12, atol=1e-12)


def test_pixel_centres_read_the_pixel_and_corners_are_half_weighted():
    maps = torch.arange(12, dtype=torch.float64).reshape(1, 1, 3, 4)
    centres = torch.tensor([[[(1 + 0.5) / 4, (2 + 0.5) / 3], [0.5 / 4, 0.5 / 3]]], dtype=torch.float64)
    torch.testing.assert_close(point_sample(maps, centres)[0, 0], torch.tensor([9.0, 0.0], dtype=torch.float64))
    # (0, 0) lies a quarter of the way into pixel (0, 0)'s neighbourhood: only 1/4 of its value, the rest reads 0
    corner = point_sample(torch.ones(1, 1, 3, 4, dtype=torch.float64), torch.zeros(1, 1, 2, dtype=torch.float64))
    assert corner.item() == pytest.approx(0.25)


def test_gradients_match_naive_and_gradcheck():
    torch.manual_seed(1)
    maps = torch.randn(2, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    # interior points off the pixel grid: bilinear sampling is differentiable in the points there
    coords = (torch.rand(2, 6, 2, dtype=torch.float64) * 0.8 + 0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m, c: point_sample(m, c), (maps, coords))
    w = torch.randn(2, 2, 6, dtype=torch.float64)
    g_fast = torch.autograd.grad((point_sample(maps, coords) * w).sum(), (maps, coords))
    g_ref = torch.autograd.grad((point_sample_naive(maps, coords) * w).sum(), (maps, coords))
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shared", [True, False])
def test_canvas_sampling_equals_explicit_zero_padding(shared):
    g = torch.Generator().manual_seed(2)
    masks = torch.rand(3, 9, 6, generator=g) > 0.5  # an unpadded image of 9 x 6
    canvas = (12, 16)  # the padded batch: bottom/right zeros
    coords = _coords(1 if shared else 3, 40, seed=3)
    padded = torch.zeros(3, *canvas, dtype=torch.float64)
    padded[:, :9, :6] = masks.double()
    ref = point_sample(padded[None], coords)[0] if shared else point_sample(padded[:, None], coords)[:, 0]
    got = point_sample_on_canvas(masks, coords, canvas)
    assert got.shape == (3, 40) and got.dtype == torch.float64
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    assert point_sample_on_canvas(masks[:0], coords[:1], canvas).shape == (0, 40)


def _naive_uncertain(logits, num_points, ratio, importance):
    """The point selection written out: per mask, sort the candidates by -|logit| and keep the first k."""
    m, k = int(num_points * ratio), int(importance * num_points)
    candidates = torch.rand(logits.shape[0], m, 2, dtype=logits.dtype)
    out = []
    for i in range(logits.shape[0]):
        u = [-abs(point_sample_naive(logits[i : i + 1], candidates[i : i + 1, j : j + 1])[0, 0, 0].item()) for j in range(m)]
        order = sorted(range(m), key=lambda j: -u[j])[:k]
        out.append(candidates[i, order])
    fill = torch.rand(logits.shape[0], num_points - k, 2, dtype=logits.dtype)
    return torch.cat([torch.stack(out), fill], 1), candidates


@pytest.mark.parametrize("num_points,ratio,importance", [(10, 3.0, 0.75), (7, 2.5, 0.5), (6, 1.0, 1.0), (5, 4.0, 0.0)])
def test_importance_points_equal_naive_top_k(num_points, ratio, importance):
    torch.manual_seed(4)
    logits = torch.randn(3, 1, 6, 8, dtype=torch.float64) * 3
    state = torch.get_rng_state()
    got = uncertain_point_coords(logits, num_points, ratio, importance)
    after = torch.get_rng_state()
    torch.set_rng_state(state)
    ref, candidates = _naive_uncertain(logits, num_points, ratio, importance)
    assert got.shape == (3, num_points, 2) and got.dtype == torch.float64
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    assert torch.equal(torch.get_rng_state(), after)  # the same draws from the global generator, nothing more
    # exactly k importance points come from the candidates; the rest are fresh draws
    m, k = point_budget(num_points, ratio, importance)
    assert candidates.shape[1] == m
    for i in range(3):
        from_candidates = [(got[i, j] == candidates[i]).all(-1).any().item() for j in range(num_points)]
        assert from_candidates[:k] == [True] * k and not any(from_candidates[k:])


def test_importance_points_prefer_the_boundary():
    # logits = x - 0.5 scaled: uncertainty peaks on the vertical line x = 0.5
    xs = (torch.arange(64) + 0.5) / 64
    logits = (20 * (xs - 0.5)).expand(1, 1, 64, 64).contiguous()
    torch.manual_seed(5)
    pts = uncertain_point_coords(logits, 200, 3.0, 0.75)
    assert pts.dtype == torch.float32 and pts.requires_grad is False
    imp, fill = pts[0, :150, 0], pts[0, 150:, 0]
    assert (imp - 0.5).abs().max() < (fill - 0.5).abs().max()
    assert (imp - 0.5).abs().mean() < 0.2


def test_point_budget_rejects_bad_ratios():
    assert point_budget(12544, 3.0, 0.75) == (37632, 9408)
    for bad in [(0, 3.0, 0.75), (10, 0.5, 0.75), (10, 3.0, 1.5)]:
        with pytest.raises(ValueError, match="point sampling"):
            point_budget(*bad)


def test_point_sample_follows_the_maps_dtype():
    maps = torch.randn(1, 2, 4, 4)
    coords = torch.rand(1, 5, 2, dtype=torch.float64)
    out = point_sample(maps, coords)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, point_sample_naive(maps, coords.float()))
