"""Pure-PyTorch NMS against a naive transcription of greedy NMS, and the post-processing option."""

from __future__ import annotations

import pytest
import torch

from matchdetr.models.postprocess import PostProcessor
from matchdetr.ops.nms import batched_nms, nms, nms_reference
from matchdetr.structures import Prediction


def random_boxes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 80
    wh = torch.rand(n, 2, generator=g) * 40 + 1
    return torch.cat((xy, xy + wh), 1), torch.rand(n, generator=g)


@pytest.mark.parametrize("thr", [0.0, 0.3, 0.5, 0.8, 1.0])
@pytest.mark.parametrize("seed", range(4))
def test_nms_matches_naive_reference(thr, seed):
    boxes, scores = random_boxes(60, seed)
    assert nms(boxes, scores, thr).tolist() == nms_reference(boxes, scores, thr)


def test_nms_ties_and_duplicates():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10.0]])
    scores = torch.tensor([0.5, 0.5, 0.4, 0.9])
    assert nms(boxes, scores, 0.5).tolist() == [3, 2]
    assert nms(boxes, scores, 1.0).tolist() == [3, 0, 1, 2]  # IoU 1 is not > 1: nothing suppressed
    assert nms(boxes[:0], scores[:0], 0.5).numel() == 0


@pytest.mark.parametrize("seed", range(3))
def test_batched_nms_is_per_class(seed):
    boxes, scores = random_boxes(50, seed)
    labels = torch.randint(0, 3, (50,), generator=torch.Generator().manual_seed(seed))
    got = set(batched_nms(boxes - 30, scores, labels, 0.5).tolist())  # negative coordinates too
    want = set()
    for c in range(3):
        idx = (labels == c).nonzero().flatten()
        want |= {int(idx[k]) for k in nms_reference(boxes[idx], scores[idx], 0.5)}
    assert got == want


def test_postprocessor_nms_option_removes_duplicates():
    logits = torch.full((1, 3, 2), -10.0)
    logits[0, :, 1] = torch.tensor([3.0, 2.0, 1.0])
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.2, 0.21], [0.2, 0.2, 0.1, 0.1]]])
    sizes = torch.tensor([[100, 100]])
    plain = PostProcessor(topk=6)(Prediction(logits, boxes), sizes)[0]
    pruned = PostProcessor(topk=6, nms_iou=0.8)(Prediction(logits, boxes), sizes)[0]
    assert len(plain.scores) == 6
    # the near-duplicate of query 0 (IoU 0.95) is removed for class 1; class 0 detections are kept apart
    kept = {(round(float(s), 4), int(l)) for s, l in zip(pruned.scores, pruned.labels)}
    assert (round(float(torch.sigmoid(torch.tensor(2.0))), 4), 1) not in kept
    assert len(pruned.scores) < len(plain.scores)
