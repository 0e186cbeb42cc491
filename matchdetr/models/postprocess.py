"""Turn raw outputs into per-image detections in original-image pixels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..boxes import cxcywh_to_xyxy
from ..ops.nms import batched_nms
from ..structures import Detections, Prediction


class PostProcessor(nn.Module):
    """Sigmoid scores, top-k over (queries x classes), boxes scaled to the original image.

    A query may give several detections with different classes (Deformable-DETR's post-processing), which is
    what the published focal-loss DETRs evaluate. ``nms_iou`` adds class-aware NMS at that IoU after the top-k.
    """

    def __init__(self, topk: int = 100, nms_iou: float | None = None) -> None:
        super().__init__()
        self.topk, self.nms_iou = topk, nms_iou

    @torch.no_grad()
    def forward(self, pred: Prediction, orig_sizes: Tensor, input_sizes: Tensor | None = None) -> list[Detections]:
        """pred: logits ``[B, Q, C]``, boxes ``[B, Q, 4]`` (masks ``[B, Q, h, w]``); orig_sizes: ``[B, 2]`` (h, w)
        -> B Detections. input_sizes ``[B, 2]``: each image's (h, w) in the padded batch the model saw, which
        masks need to be cut out of it (:func:`instance_masks`)."""
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
        if pred.masks is not None and input_sizes is not None:
            for i, d in enumerate(dets):
                d.masks, mask_scores = instance_masks(pred.masks[i, query_idx[i]], input_sizes[i], orig_sizes[i])
                d.scores = d.scores * mask_scores
        if self.nms_iou is not None:  # Stable-DINO's test-time class-aware NMS, after the top-k (paper table 6)
            dets = [d.select(k) for d in dets for k in [batched_nms(d.boxes, d.scores, d.labels, self.nms_iou)]]
        return dets


def instance_masks(logits: Tensor, input_size: Tensor, orig_size: Tensor) -> tuple[Tensor, Tensor]:
    """Mask-DINO's instance inference (the release's ``instance_inference``): mask logits ``[K, h, w]`` at
    stride 4 of the padded batch -> bilinear to the padded input, the image's ``input_size`` (h, w) cut out,
    bilinear to ``orig_size`` -> bool masks ``[K, H, W]`` (logit > 0) and each mask's score, the mean sigmoid
    inside it (the detection score is multiplied by it)."""
    h4, w4 = logits.shape[-2:]
    up = F.interpolate(logits[None].float(), size=(4 * h4, 4 * w4), mode="bilinear", align_corners=False)
    ih, iw = int(input_size[0]), int(input_size[1])
    oh, ow = int(orig_size[0]), int(orig_size[1])
    up = F.interpolate(up[:, :, :ih, :iw], size=(oh, ow), mode="bilinear", align_corners=False)[0]
    masks = up > 0
    prob = up.sigmoid()
    score = (prob * masks).flatten(1).sum(1) / (masks.flatten(1).sum(1) + 1e-6)
    return masks, score
