import itertools

import pytest
import torch

from matchdetr import boxes as B


def naive_iou_giou(a, b):
    """Direct transcription of IoU and GIoU (Rezatofighi et al. 2019, algorithm 1) for one pair."""
    ax0, ay0, ax1, ay1 = a
    bx0, by0, bx1, by1 = b
    area_a = max(ax1 - ax0, 0) * max(ay1 - ay0, 0)
    area_b = max(bx1 - bx0, 0) * max(by1 - by0, 0)
    iw = max(min(ax1, bx1) - max(ax0, bx0), 0)
    ih = max(min(ay1, by1) - max(ay0, by0), 0)
    inter = iw * ih
    union = area_a + area_b - inter
    iou = inter / union
    cw = max(ax1, bx1) - min(ax0, bx0)
    ch = max(ay1, by1) - min(ay0, by0)
    c = cw * ch
    return iou, iou - (c - union) / c


def random_xyxy(n, gen):
    xy = torch.rand(n, 2, generator=gen, dtype=torch.float64)
    wh = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 0.5 + 0.01
    return torch.cat([xy, xy + wh], 1)


def test_conversions_roundtrip():
    gen = torch.Generator().manual_seed(0)
    b = random_xyxy(10, gen)
    assert torch.allclose(B.cxcywh_to_xyxy(B.xyxy_to_cxcywh(b)), b)
    assert torch.allclose(B.xywh_to_xyxy(B.xyxy_to_xywh(b)), b)


def test_pairwise_iou_giou_match_naive():
    gen = torch.Generator().manual_seed(1)
    a, b = random_xyxy(5, gen), random_xyxy(4, gen)
    iou, giou = B.box_iou(a, b), B.generalized_box_iou(a, b)
    for i, j in itertools.product(range(5), range(4)):
        ref_iou, ref_giou = naive_iou_giou(a[i].tolist(), b[j].tolist())
        assert iou[i, j].item() == pytest.approx(ref_iou, abs=1e-9)
        assert giou[i, j].item() == pytest.approx(ref_giou, abs=1e-9)
    assert torch.allclose(B.elementwise_generalized_box_iou(a[:4], b), torch.diagonal(giou[:4, :4]))


def test_degenerate_boxes_are_finite_not_asserted():
    deg = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.6, 0.6, 0.2, 0.2], [0.1, 0.1, 0.3, 0.3]])
    giou = B.generalized_box_iou(deg, deg)
    assert torch.isfinite(giou).all()
    assert giou.min() >= -1 and giou.max() <= 1
    x = deg.clone().requires_grad_(True)
    B.elementwise_generalized_box_iou(x, deg.flip(0)).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_identical_boxes_give_one_and_disjoint_negative():
    a = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[2.0, 2.0, 3.0, 3.0]])
    assert B.generalized_box_iou(a, a).item() == pytest.approx(1.0)
    assert B.box_iou(a, b).item() == 0.0
    assert B.generalized_box_iou(a, b).item() == pytest.approx(0.0 - (9 - 2) / 9)


def test_inverse_sigmoid():
    x = torch.tensor([0.0, 0.25, 0.5, 1.0])
    y = B.inverse_sigmoid(x)
    assert torch.isfinite(y).all()
    assert torch.allclose(torch.sigmoid(y[1:3]), x[1:3], atol=1e-6)


def test_numpy_box_iou_equals_the_torch_one() -> None:
    """``boxes_numpy.box_iou`` (ONNX NMS, the confusion matrix) is ``boxes.box_iou`` on valid and empty boxes."""
    import numpy as np

    from matchdetr.boxes import box_iou as torch_iou
    from matchdetr.boxes_numpy import box_iou

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(12, 2, generator=g, dtype=torch.float64) * 50
    a = torch.cat([xy, xy + torch.rand(12, 2, generator=g, dtype=torch.float64) * 30], 1)
    a[3, 2:] = a[3, :2]  # an empty box
    b = a.flip(0) + 3.0
    assert np.allclose(box_iou(a.numpy(), b.numpy()), torch_iou(a, b).numpy(), atol=1e-12)
