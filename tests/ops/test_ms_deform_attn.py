"""Multi-scale deformable attention: fast op vs naive loop, gradcheck, parity with HF transformers, ONNX.

Run this file as a script (``python tests/ops/test_ms_deform_attn.py``) for the CPU benchmark against an
HF-style per-level ``grid_sample`` implementation.
"""

from __future__ import annotations

import io

import pytest
import torch

import matchdetr.models.deformable_attention as deform_module
from matchdetr.models.deformable_attention import MSDeformAttn
from matchdetr.ops import ms_deform_attn, ms_deform_attn_naive
from matchdetr.ops.ms_deform_attn_stacked import ms_deform_attn_stacked


def _inputs(shapes, batch=2, queries=4, heads=2, head_dim=3, points=2, dtype=torch.float64, seed=0,
            lo=-0.3, hi=1.3):
    """Random op inputs; locations uniform in [lo, hi] so some fall outside the maps."""
    g = torch.Generator().manual_seed(seed)
    shapes_t = torch.tensor(shapes, dtype=torch.long)
    sizes = shapes_t.prod(1)
    starts = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    levels = len(shapes)
    value = torch.randn(batch, int(sizes.sum()), heads, head_dim, generator=g, dtype=dtype)
    loc = lo + (hi - lo) * torch.rand(batch, queries, heads, levels, points, 2, generator=g, dtype=dtype)
    logits = torch.randn(batch, queries, heads, levels * points, generator=g, dtype=dtype)
    weights = logits.softmax(-1).view(batch, queries, heads, levels, points)
    return value, shapes_t, starts, loc, weights


def _off_grid_locations(shapes, batch, queries, heads, points, seed):
    """Locations whose pixel coordinates (loc * size - 0.5) have fractional part in [0.2, 0.8]: bilinear
    interpolation has kinks at integer pixel positions, where finite differences disagree with the gradient."""
    g = torch.Generator().manual_seed(seed)
    per_level = []
    for h, w in shapes:
        size = torch.tensor([w, h], dtype=torch.float64)
        whole = torch.floor(torch.rand(batch, queries, heads, points, 2, generator=g, dtype=torch.float64)
                            * (size + 2)) - 1  # one pixel beyond each border
        frac = 0.2 + 0.6 * torch.rand(batch, queries, heads, points, 2, generator=g, dtype=torch.float64)
        per_level.append((whole + frac + 0.5) / size)
    return torch.stack(per_level, 3)


CASES = [  # (level shapes, heads, points, head_dim)
    ([(4, 6)], 1, 1, 4),
    ([(3, 5), (7, 1)], 2, 3, 2),
    ([(3, 5), (7, 1), (1, 1)], 3, 1, 3),
    ([(8, 8), (4, 4), (2, 2), (1, 1)], 2, 3, 2),
    ([(5, 3), (1, 7), (2, 2), (3, 1), (1, 1)], 3, 3, 1),
]


@pytest.mark.parametrize("shapes,heads,points,head_dim", CASES)
def test_matches_naive(shapes, heads, points, head_dim):
    args = _inputs(shapes, heads=heads, points=points, head_dim=head_dim, seed=len(shapes))
    torch.testing.assert_close(ms_deform_attn(*args), ms_deform_attn_naive(*args), atol=1e-10, rtol=0)


@pytest.mark.parametrize("shapes,heads,points,head_dim", CASES)
def test_stacked_baseline_matches_naive(shapes, heads, points, head_dim):
    """The textbook formulation ``bench gpu`` times ours against computes the same thing."""
    args = _inputs(shapes, heads=heads, points=points, head_dim=head_dim, seed=len(shapes))
    torch.testing.assert_close(ms_deform_attn_stacked(*args), ms_deform_attn_naive(*args), atol=1e-10, rtol=0)


def test_matches_naive_under_autograd_and_partial_grads():
    shapes = [(3, 5), (7, 1), (1, 1)]
    value, s, st, loc, w = _inputs(shapes, heads=3, points=3)
    grad_out = torch.randn(2, 4, 9, dtype=torch.float64)
    for wanted in ([True, True, True], [True, False, False], [False, True, False], [False, False, True]):
        leaves = [t.clone().requires_grad_(r) for t, r in zip((value, loc, w), wanted)]
        fast = ms_deform_attn(leaves[0], s, st, leaves[1], leaves[2])
        ref = ms_deform_attn_naive(leaves[0], s, st, leaves[1], leaves[2])
        torch.testing.assert_close(fast, ref, atol=1e-10, rtol=0)
        need = [t for t in leaves if t.requires_grad]
        for a, b in zip(torch.autograd.grad(fast, need, grad_out), torch.autograd.grad(ref, need, grad_out)):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("shapes,heads,points", [([(3, 4)], 2, 2), ([(3, 5), (7, 1), (1, 1)], 2, 3),
                                                 ([(2, 3), (1, 2)], 1, 1)])
def test_gradcheck(shapes, heads, points):
    value, s, st, _, w = _inputs(shapes, batch=2, queries=3, heads=heads, points=points, head_dim=2)
    loc = _off_grid_locations(shapes, 2, 3, heads, points, seed=1)
    leaves = [t.clone().requires_grad_() for t in (value, loc, w)]
    assert torch.autograd.gradcheck(lambda v, l, a: ms_deform_attn(v, s, st, l, a), leaves)


def test_far_outside_locations_give_zero_and_nan_stays_nan():
    """Locations far beyond a map (clamped onto the zero border) contribute nothing, as grid_sample's zero
    padding; a NaN location gives NaN for its query and never an out-of-range read."""
    shapes = [(3, 5), (2, 2)]
    value, s, st, loc, w = _inputs(shapes, heads=2, points=2, head_dim=3, dtype=torch.float32)
    loc[0, 0] = 40.0
    loc[0, 1] = -1e30
    loc[1, 2, 0, 0, 0, 0] = float("nan")
    out = ms_deform_attn(value, s, st, loc, w)
    want = ms_deform_attn_stacked(value, s, st, loc.nan_to_num(nan=0.5), w)
    assert torch.equal(out[0, :2], torch.zeros_like(out[0, :2]))
    assert torch.isnan(out[1, 2, :3]).all() and torch.isfinite(out[1, 2, 3:]).all()  # head 0 only
    keep = torch.ones(2, 4, dtype=torch.bool)
    keep[1, 2] = False
    torch.testing.assert_close(out[keep], want[keep], atol=1e-5, rtol=1e-5)


def test_tap_dots_sparse_and_gathered_agree():
    """The attention gradient's two formulations: SDDMM on the taps' pattern and chunked gathers."""
    from matchdetr.ops.ms_deform_attn import _tap_dots

    g = torch.Generator().manual_seed(3)
    rows = torch.randn(50, 6, generator=g, dtype=torch.float64)
    index = torch.randint(0, 50, (7, 16), generator=g, dtype=torch.int32)  # repeats within a row included
    index[0, :4] = 9
    grad = torch.randn(7, 6, generator=g, dtype=torch.float64)
    want = torch.einsum("rkd,rd->rk", rows[index.long()], grad)
    for sparse in (True, False):
        torch.testing.assert_close(_tap_dots(index, grad, rows, sparse=sparse), want, atol=1e-12, rtol=0)


def test_backward_keeps_taps_not_samples():
    """What autograd keeps for the backward: the inputs and the taps (int32 index + float weight), not the
    ``[N, D, P, Q]`` per-level samples (which at the R50 encoder size were 278 MiB a layer at batch 2)."""
    shapes = [(16, 16), (8, 8), (4, 4), (2, 2)]
    heads, head_dim, points, queries = 8, 32, 4, 340
    value, s, st, loc, w = _inputs(shapes, batch=2, queries=queries, heads=heads, head_dim=head_dim, points=points,
                                   dtype=torch.float32)
    leaves = [t.clone().requires_grad_() for t in (value, loc, w)]
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        ms_deform_attn(leaves[0], s, st, leaves[1], leaves[2])
    inputs = sum(t.numel() * 4 for t in leaves)
    taps = 2 * queries * heads * len(shapes) * points * 4 * (4 + 4)
    samples = 2 * heads * head_dim * points * queries * len(shapes) * 4
    assert sum(saved.values()) <= inputs + taps < samples + inputs


def test_matches_hf_function():
    pytest.importorskip("transformers")
    from transformers.models.deformable_detr.modeling_deformable_detr import MultiScaleDeformableAttention

    shapes = [(8, 8), (4, 4), (2, 2), (1, 1)]
    value, s, st, loc, w = _inputs(shapes, heads=4, points=4, head_dim=8, queries=10, dtype=torch.float32)
    want = MultiScaleDeformableAttention()(value, s, shapes, st, loc, w, 64)
    torch.testing.assert_close(ms_deform_attn(value, s, st, loc, w), want, atol=1e-6, rtol=1e-5)


def test_bfloat16_runs_and_stays_finite():
    value, s, st, loc, w = _inputs([(6, 5), (3, 3), (1, 2)], heads=2, points=3, head_dim=4, dtype=torch.float32)
    leaves = [t.bfloat16().requires_grad_() for t in (value, loc, w)]
    out = ms_deform_attn(leaves[0], s, st, leaves[1], leaves[2])
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), ms_deform_attn(value, s, st, loc, w), atol=0.1, rtol=0.05)
    out.float().square().sum().backward()
    assert all(t.grad.dtype == torch.bfloat16 and torch.isfinite(t.grad).all() for t in leaves)
    attn = MSDeformAttn(16, 2, 3, 2).bfloat16()
    q = torch.randn(2, 4, 16, dtype=torch.bfloat16)
    y = attn(q, torch.rand(2, 4, 3, 2, dtype=torch.bfloat16), torch.randn(2, 41, 16, dtype=torch.bfloat16), s, st)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()


def _module_inputs(dim=16, levels=3, queries=5, coords=2, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    shapes = torch.tensor([(5, 7), (3, 4), (1, 2)][:levels], dtype=torch.long)
    sizes = shapes.prod(1)
    starts = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    query = torch.randn(2, queries, dim, generator=g, dtype=dtype)
    value = torch.randn(2, int(sizes.sum()), dim, generator=g, dtype=dtype)
    ref = torch.rand(2, queries, levels, coords, generator=g, dtype=dtype)
    if coords == 4:
        ref[..., 2:] = 0.1 + 0.5 * ref[..., 2:]
    pad = torch.zeros(2, int(sizes.sum()), dtype=torch.bool)
    pad[1, 30:35] = True  # image 1 padded on the right of level 0 and the end of level 1
    pad[1, 45:47] = True
    return query, ref, value, shapes, starts, pad


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))


@pytest.mark.parametrize("coords", [2, 4])
def test_module_with_padding_matches_naive(coords, monkeypatch):
    attn = MSDeformAttn(16, 2, 3, 3).double()
    _randomise(attn)
    query, ref, value, shapes, starts, pad = _module_inputs(coords=coords)
    got = attn(query, ref, value, shapes, starts, pad)
    corrupted = value.masked_fill(pad[..., None], 1e3)  # padded positions must not leak into the output
    torch.testing.assert_close(attn(query, ref, corrupted, shapes, starts, pad), got, atol=1e-10, rtol=0)
    monkeypatch.setattr(deform_module, "ms_deform_attn", ms_deform_attn_naive)
    torch.testing.assert_close(got, attn(query, ref, value, shapes, starts, pad), atol=1e-10, rtol=0)


@pytest.mark.parametrize("coords", [2, 4])
def test_module_matches_hf(coords):
    pytest.importorskip("transformers")
    from transformers.models.deformable_detr.configuration_deformable_detr import DeformableDetrConfig
    from transformers.models.deformable_detr.modeling_deformable_detr import (
        DeformableDetrMultiscaleDeformableAttention,
    )

    config = DeformableDetrConfig(d_model=16, num_feature_levels=3, disable_custom_kernels=True)
    hf = DeformableDetrMultiscaleDeformableAttention(config, num_heads=2, n_points=3).eval()
    ours = MSDeformAttn(16, 2, 3, 3)
    _randomise(hf, seed=coords)
    ours.load_state_dict(hf.state_dict())  # same parameter names, strict
    query, ref, value, shapes, starts, pad = _module_inputs(coords=coords, dtype=torch.float32)
    want, _ = hf(hidden_states=query, attention_mask=~pad, encoder_hidden_states=value, reference_points=ref,
                 spatial_shapes=shapes, spatial_shapes_list=[tuple(x) for x in shapes.tolist()],
                 level_start_index=starts)
    torch.testing.assert_close(ours(query, ref, value, shapes, starts, pad), want, atol=1e-5, rtol=0)


def test_module_init_matches_deformable_detr():
    attn = MSDeformAttn(32, 8, 2, 3)
    bias = attn.sampling_offsets.bias.view(8, 2, 3, 2)
    # head 0 looks along +x, head 2 along +y, head 1 along the diagonal (normalised by the larger coordinate);
    # point k sits at distance k + 1 on every level
    torch.testing.assert_close(bias[0, 1, 2], torch.tensor([3.0, 0.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(bias[1, 0, 1], torch.tensor([2.0, 2.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(bias[2, 0, 0], torch.tensor([0.0, 1.0]), atol=1e-6, rtol=0)
    assert attn.sampling_offsets.weight.abs().sum() == 0 and attn.attention_weights.weight.abs().sum() == 0
    assert attn.attention_weights.bias.abs().sum() == 0 and attn.value_proj.bias.abs().sum() == 0


def test_module_errors():
    attn = MSDeformAttn(16, 2, 3, 3)
    query, ref, value, shapes, starts, _ = _module_inputs(dtype=torch.float32)
    with pytest.raises(ValueError, match="must end in 2"):
        attn(query, torch.rand(2, 5, 3, 3), value, shapes, starts)
    with pytest.raises(ValueError, match="positions"):
        attn(query, ref, value[:, :-1], shapes, starts)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_onnx_export_matches_onnxruntime():
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    attn = MSDeformAttn(16, 2, 3, 3).eval()
    _randomise(attn)
    query, ref, value, shapes, starts, pad = _module_inputs(coords=4, dtype=torch.float32)

    class Wrapped(torch.nn.Module):  # level layout baked in: the graph is specialised to these map sizes
        def __init__(self):
            super().__init__()
            self.attn = attn

        def forward(self, q, r, v, m):
            return self.attn(q, r, v, shapes, starts, m)

    buf = io.BytesIO()
    torch.onnx.export(Wrapped(), (query, ref, value, pad), buf, opset_version=16, dynamo=False,
                      input_names=["q", "r", "v", "m"])
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"q": query.numpy(), "r": ref.numpy(), "v": value.numpy(), "m": pad.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), attn(query, ref, value, shapes, starts, pad),
                               atol=1e-4, rtol=0)


# ---------------------------------------------------------------------------------------------------------
# Benchmark (not a test): python tests/ops/test_ms_deform_attn.py [threads]


def _benchmark(repeats: int = 5) -> None:
    import statistics
    import time

    shapes = [(80, 80), (40, 40), (20, 20), (10, 10)]  # 640x640 image, strides 8..64
    print(f"threads={torch.get_num_threads()}  B=2 d=256 heads=8 L=4 P=4, median of {repeats} (ms)")
    for queries in (300, 8500):
        args = _inputs(shapes, batch=2, queries=queries, heads=8, head_dim=32, points=4, dtype=torch.float32)
        for backward in (False, True):
            times = {"stacked": [], "ms_deform_attn": []}
            for r in range(repeats + 1):  # interleaved, first round is warm-up
                for name, fn in (("stacked", ms_deform_attn_stacked), ("ms_deform_attn", ms_deform_attn)):
                    leaves = [t.clone().requires_grad_(backward and t.is_floating_point()) for t in args]
                    start = time.perf_counter()
                    with torch.set_grad_enabled(backward):
                        out = fn(*leaves)
                        if backward:
                            out.sum().backward()
                    if r:
                        times[name].append(1e3 * (time.perf_counter() - start))
            med = {k: statistics.median(v) for k, v in times.items()}
            print(f"Q={queries:5d} {'fwd+bwd' if backward else 'fwd    '}  stacked {med['stacked']:8.1f}  "
                  f"ms_deform_attn {med['ms_deform_attn']:8.1f}  speed-up {med['stacked'] / med['ms_deform_attn']:.2f}x")


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1:
        torch.set_num_threads(int(sys.argv[1]))
    _benchmark()
