"""Box conversions and overlaps.

Convention (stated once, used everywhere): inside the model boxes are normalised ``(cx, cy, w, h)`` in
``[0, 1]`` of the valid (unpadded) image. Post-processing converts to absolute ``(x0, y0, x1, y1)`` pixels.

Every overlap function is total: degenerate boxes (zero or negative size, NaN-free inputs) give finite values
instead of tripping an assertion deep inside a run (the ``assert (boxes1[:, 2:] >= boxes1[:, :2]).all()``
crash of the original DETR, detr #509).
"""

from __future__ import annotations

import torch
from torch import Tensor

# Keeps unions and enclosing areas away from zero; small against any real box area in normalised units.
_EPS = 1e-7


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``[..., 4]`` (cx, cy, w, h) -> ``[..., 4]`` (x0, y0, x1, y1)."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """``[..., 4]`` (x0, y0, x1, y1) -> ``[..., 4]`` (cx, cy, w, h)."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack(((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), dim=-1)


def xywh_to_xyxy(boxes: Tensor) -> Tensor:
    """COCO ``[..., 4]`` (x, y, w, h) -> ``[..., 4]`` (x0, y0, x1, y1)."""
    x, y, w, h = boxes.unbind(-1)
    return torch.stack((x, y, x + w, y + h), dim=-1)


def xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """``[..., 4]`` (x0, y0, x1, y1) -> COCO ``[..., 4]`` (x, y, w, h)."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack((x0, y0, x1 - x0, y1 - y0), dim=-1)


def mask_extents(masks: Tensor) -> Tensor:
    """Bounding boxes of boolean masks ``[..., h, w]`` as abs xyxy pixels ``[..., 4]`` float, spanning whole
    pixels (a mask of column 3 alone spans ``x 3..4``, as detectron2's BitMasks); the zero box for an empty
    mask. The map size is read as a tensor under ONNX tracing, so an exported graph follows the input."""
    cols, rows = masks.any(-2), masks.any(-1)  # [..., w], [..., h]
    if torch.jit.is_tracing():
        h, w = torch._shape_as_tensor(masks)[-2:].to(masks.device).unbind(0)
    else:
        h, w = masks.shape[-2:]
    first = lambda m: m.float().argmax(-1)  # noqa: E731  (argmax of 0/1: the first 1)
    x0, y0 = first(cols), first(rows)
    x1, y1 = w - first(cols.flip(-1)), h - first(rows.flip(-1))
    return torch.stack((x0, y0, x1, y1), -1).float() * cols.any(-1, keepdim=True)


def box_area(boxes: Tensor) -> Tensor:
    """``[..., 4]`` xyxy -> ``[...]`` area; a box with inverted corners has area 0."""
    wh = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0)
    return wh[..., 0] * wh[..., 1]


def _inter_union(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """Broadcasting intersection and union of xyxy boxes ``[..., 4]``, ``[..., 4]`` -> ``[...]``, ``[...]``."""
    lt = torch.maximum(boxes1[..., :2], boxes2[..., :2])
    rb = torch.minimum(boxes1[..., 2:], boxes2[..., 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(boxes1) + box_area(boxes2) - inter
    return inter, union


def elementwise_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of aligned xyxy boxes: ``[..., 4]`` with ``[..., 4]`` -> ``[...]`` (broadcasting)."""
    inter, union = _inter_union(boxes1, boxes2)
    return inter / union.clamp(min=_EPS)


def elementwise_generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """GIoU (Rezatofighi et al. 2019, eq. 1) of aligned xyxy boxes ``[..., 4]`` -> ``[...]`` in [-1, 1].

    Degenerate boxes are allowed: the enclosing area is clamped away from zero, so the result stays finite.
    """
    inter, union = _inter_union(boxes1, boxes2)
    iou = inter / union.clamp(min=_EPS)
    lt = torch.minimum(boxes1[..., :2], boxes2[..., :2])
    rb = torch.maximum(boxes1[..., 2:], boxes2[..., 2:])
    wh = (rb - lt).clamp(min=0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou - (enclosing - union) / enclosing.clamp(min=_EPS)


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise IoU of xyxy boxes: ``[N, 4]`` x ``[M, 4]`` -> ``[N, M]``."""
    return elementwise_box_iou(boxes1[:, None, :], boxes2[None, :, :])


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise GIoU of xyxy boxes: ``[N, 4]`` x ``[M, 4]`` -> ``[N, M]`` in [-1, 1]."""
    return elementwise_generalized_box_iou(boxes1[:, None, :], boxes2[None, :, :])


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """Logit of ``x`` clamped to ``[eps, 1 - eps]``; used for box refinement in unbounded space."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def apply_box_delta(reference: Tensor, delta: Tensor) -> Tensor:
    """Refine a reference by a delta in logit space (Deformable-DETR sec 4.1 / appendix A.4):
    ``sigmoid(delta + logit(reference))``. A 2-d reference point ``[..., 2]`` only moves the centre and takes
    w, h from the delta, so the result is always a ``[..., 4]`` cxcywh box."""
    if reference.shape[-1] == 4:
        return (delta + inverse_sigmoid(reference)).sigmoid()
    return torch.cat((delta[..., :2] + inverse_sigmoid(reference), delta[..., 2:]), -1).sigmoid()
