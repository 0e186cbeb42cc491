"""Box regression losses on matched pairs: L1 on cxcywh and 1 - GIoU (Carion et al. 2020, sec 3.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..boxes import cxcywh_to_xyxy, elementwise_generalized_box_iou
from ..structures import Prediction, Target


def matched_boxes(
    pred: Prediction, targets: list[Target], indices: list[tuple[Tensor, Tensor]]
) -> tuple[Tensor, Tensor]:
    """Gather matched pairs: predicted ``[K, 4]`` and GT ``[K, 4]`` cxcywh boxes over the batch."""
    src, tgt = [], []
    for b, ((qi, gi), t) in enumerate(zip(indices, targets)):
        src.append(pred.boxes[b, qi])
        tgt.append(t.boxes[gi])
    return torch.cat(src).float(), torch.cat(tgt).float()


class BoxLoss:
    """Returns ``{"bbox": L1 sum / num_boxes, "giou": (1 - GIoU) sum / num_boxes}``."""

    def __call__(
        self,
        pred: Prediction,
        targets: list[Target],
        indices: list[tuple[Tensor, Tensor]],
        num_boxes: float,
    ) -> dict[str, Tensor]:
        src, tgt = matched_boxes(pred, targets, indices)
        l1 = F.l1_loss(src, tgt, reduction="none").sum() / num_boxes
        giou = elementwise_generalized_box_iou(cxcywh_to_xyxy(src), cxcywh_to_xyxy(tgt))
        return {"bbox": l1, "giou": (1 - giou).sum() / num_boxes}
