"""Turn raw outputs into per-image detections in original-image pixels."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..boxes import cxcywh_to_xyxy
from ..ops.nms import batched_nms
from ..structures import Detections, Prediction


class PostProcessor(nn.Module):
    """Sigmoid scores, top-k over (queries x classes), boxes scaled to the original image.

    A query may give several detections with different classes (Deformable-DETR's post-processing), which is
    what the published focal-loss DETRs evaluate. ``nms_iou > 0`` adds class-aware NMS after the top-k.
    """

    def __init__(self, topk: int = 100, nms_iou: float = 0.0) -> None:
        super().__init__()
        self.topk, self.nms_iou = topk, nms_iou

    @torch.no_grad()
    def forward(self, pred: Prediction, orig_sizes: Tensor) -> list[Detections]:
        """pred: logits ``[B, Q, C]``, boxes ``[B, Q, 4]``; orig_sizes: ``[B, 2]`` (h, w) -> B Detections."""
        logits, boxes = pred.logits.float(), pred.boxes.float()
        b, q, c = logits.shape
        scores = logits.sigmoid().flatten(1)
        k = min(self.topk, q * c)
        top_scores, top_idx = scores.topk(k, dim=1)
        query_idx = torch.div(top_idx, c, rounding_mode="floor")
        labels = top_idx % c
        xyxy = cxcywh_to_xyxy(boxes).gather(1, query_idx[..., None].expand(-1, -1, 4))
        h, w = orig_sizes.to(xyxy).unbind(1)
        xyxy = xyxy * torch.stack((w, h, w, h), 1)[:, None, :]
        dets = [Detections(boxes=xyxy[i], scores=top_scores[i], labels=labels[i]) for i in range(b)]
        if self.nms_iou > 0:  # Stable-DINO's test-time class-aware NMS, after the top-k (paper table 6)
            dets = [Detections(d.boxes[k], d.scores[k], d.labels[k])
                    for d in dets for k in [batched_nms(d.boxes, d.scores, d.labels, self.nms_iou)]]
        return dets
