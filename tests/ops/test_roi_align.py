"""RoIAlign: the vectorised op against the naive loop (torchvision's kernel transcribed) and gradcheck."""

from __future__ import annotations

import pytest
import torch

from matchdetr.ops.roi_align import roi_align, roi_align_naive


def _boxes(b: int, n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Boxes of every kind: inside the map, partly or wholly outside it, tiny (< 1 px), and larger than it."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(b, n, generator=g, dtype=torch.float64) * (w + 4) - 3
    y0 = torch.rand(b, n, generator=g, dtype=torch.float64) * (h + 4) - 3
    bw = torch.rand(b, n, generator=g, dtype=torch.float64) * w * 1.2
    bh = torch.rand(b, n, generator=g, dtype=torch.float64) * h * 1.2
    boxes = torch.stack((x0, y0, x0 + bw, y0 + bh), -1)
    boxes[:, 0] = torch.tensor([0.3, 0.4, 0.6, 0.55], dtype=torch.float64)  # tiny, inside
    boxes[:, 1] = torch.tensor([-2.0, -1.5, w + 1.0, h + 2.0], dtype=torch.float64)  # covers and exceeds the map
    boxes[:, 2] = torch.tensor([w - 0.7, h - 0.9, w + 3.0, h + 3.0], dtype=torch.float64)  # mostly outside
    return boxes


@pytest.mark.parametrize("sampling_ratio", [-1, 1, 2, 3])
@pytest.mark.parametrize("aligned", [True, False])
def test_matches_naive_loop(sampling_ratio, aligned):
    torch.manual_seed(0)
    b, c, h, w, n = 3, 4, 9, 11, 7
    feats = torch.randn(b, c, h, w, dtype=torch.float64)
    boxes = _boxes(b, n, h, w)
    for size, scale in (((7, 7), 1.0), ((3, 5), 0.5)):
        fast = roi_align(feats, boxes, size, scale, sampling_ratio, aligned)
        ref = roi_align_naive(feats, boxes, size, scale, sampling_ratio, aligned)
        assert fast.shape == (b, n, c, *size)
        torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-12)


def test_constant_map_inside_box_is_the_constant():
    feats = torch.full((1, 2, 6, 6), 3.0, dtype=torch.float64)
    boxes = torch.tensor([[[1.0, 1.0, 4.0, 5.0]]], dtype=torch.float64)
    torch.testing.assert_close(roi_align(feats, boxes, 7), torch.full((1, 1, 2, 7, 7), 3.0, dtype=torch.float64))


def test_float32_and_batched_images_are_independent():
    torch.manual_seed(1)
    feats = torch.randn(2, 3, 8, 10)
    boxes = _boxes(2, 5, 8, 10).float()
    both = roi_align(feats, boxes, 7)
    one = roi_align(feats[1:], boxes[1:], 7)
    torch.testing.assert_close(both[1:], one)
    assert both.dtype == torch.float32


@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_gradcheck_float64(sampling_ratio):
    torch.manual_seed(0)
    feats = torch.randn(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    boxes = _boxes(2, 3, 5, 6, seed=3)
    assert torch.autograd.gradcheck(lambda f: roi_align(f, boxes, (3, 2), 1.0, sampling_ratio), (feats,))
    # box gradients (away from the kinks of the bilinear tent): a generic box inside the map
    inner = torch.tensor([[[0.71, 1.33, 3.87, 4.19]], [[1.13, 0.61, 4.27, 3.31]]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda bx: roi_align(feats.detach(), bx, 2, 1.0, 2), (inner,))


def test_exports_to_onnx_with_dynamic_shapes(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")

    class Wrap(torch.nn.Module):
        def forward(self, feats, boxes):
            return roi_align(feats, boxes, 7, 1.0, 2)

    feats, boxes = torch.randn(2, 3, 8, 10), _boxes(2, 4, 8, 10).float()
    path = tmp_path / "roi.onnx"
    torch.onnx.export(Wrap(), (feats, boxes), str(path), opset_version=17, input_names=["f", "b"],
                      dynamic_axes={"f": {0: "B", 2: "H", 3: "W"}, "b": {0: "B", 1: "N"}}, dynamo=False)
    onnx.checker.check_model(onnx.load(str(path)))
    sess = ort.InferenceSession(str(path))
    feats2, boxes2 = torch.randn(3, 3, 12, 7), _boxes(3, 6, 12, 7, seed=5).float()
    (out,) = sess.run(None, {"f": feats2.numpy(), "b": boxes2.numpy()})
    torch.testing.assert_close(torch.from_numpy(out), roi_align(feats2, boxes2, 7, 1.0, 2), rtol=1e-4, atol=1e-5)
