"""Outputs in the ecosystem's shape: our post-processing equals HF transformers' post_process_object_detection
for focal-loss DETRs (top-k over queries x classes, then a strict threshold, xyxy pixels), Detector.predict
returns the same keys, and detections export to COCO results JSON."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import matchdetr
from matchdetr.models.postprocess import PostProcessor
from matchdetr.inference.predict_io import to_coco_results
from matchdetr.structures import Prediction

transformers = pytest.importorskip("transformers")


def _hf_processor():
    # The PIL-backed processor: the default one needs torchvision; post-processing is the same code.
    cls = getattr(transformers, "DeformableDetrImageProcessorPil", None) or transformers.DeformableDetrImageProcessor
    return cls()


@pytest.mark.parametrize(("queries", "classes", "topk", "threshold"), [(30, 7, 100, 0.5), (300, 91, 100, 0.3),
                                                                      (5, 3, 100, 0.0), (50, 10, 20, 0.6)])
def test_postprocess_equals_hf(queries: int, classes: int, topk: int, threshold: float) -> None:
    g = torch.Generator().manual_seed(queries)
    logits = torch.randn(2, queries, classes, generator=g) * 2
    boxes = torch.rand(2, queries, 4, generator=g) * 0.5 + 0.1
    sizes = torch.tensor([[480, 640], [333, 500]])  # (h, w)
    ours = PostProcessor(topk)(Prediction(logits=logits, boxes=boxes), sizes)
    hf = _hf_processor().post_process_object_detection(SimpleNamespace(logits=logits, pred_boxes=boxes),
                                                       threshold=threshold, target_sizes=sizes, top_k=topk)
    for o, h in zip(ours, hf):
        keep = o.scores > threshold  # what Detector.predict applies
        torch.testing.assert_close(o.scores[keep], h["scores"])
        torch.testing.assert_close(o.labels[keep], h["labels"])
        torch.testing.assert_close(o.boxes[keep], h["boxes"])


def test_predict_returns_hf_keys_and_coco_json(tmp_path) -> None:
    torch.manual_seed(0)
    det = matchdetr.build("detr-tiny", num_classes=3, transformer__hidden_dim=32,
                          transformer__num_heads=4, transformer__enc_layers=1, transformer__dec_layers=1,
                          transformer__dim_feedforward=32, transformer__num_queries=5, data__test_size=64)
    img = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    (out,) = det.predict([img], threshold=0.0)
    assert {"scores", "labels", "boxes"} <= set(out) and len(out["names"]) == len(out["scores"])
    assert out["boxes"].dtype == torch.float32 and out["labels"].dtype == torch.int64 and out["boxes"].shape[1] == 4
    assert (out["boxes"][:, 2:] >= out["boxes"][:, :2]).all()  # xyxy
    assert torch.all(out["scores"][:-1] >= out["scores"][1:])  # sorted, as HF returns them
    coco = to_coco_results([out], [42])
    assert len(coco) == len(out["scores"])
    x0, y0, x1, y1 = out["boxes"][0].tolist()
    assert coco[0]["image_id"] == 42 and coco[0]["category_id"] == int(out["labels"][0])
    assert coco[0]["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0], abs=0.01)
