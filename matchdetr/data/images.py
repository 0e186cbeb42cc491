"""Boxes of decoded images: the EXIF orientation and the annotation file's recorded size applied to boxes.

The decoding itself is :mod:`matchdetr.io.decode` (torch-free, shared with the ONNX path); its names are
re-exported here for the dataset readers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..io.decode import (  # noqa: F401  (re-exported)
    _TRANSPOSE,
    DecodedImage,
    ImageLoadError,
    ImageWarning,
    decode_image,
    load_rgb,
    to_rgb,
)


def exif_transform_boxes(boxes: Tensor, orientation: int, raw_size: tuple[int, int]) -> Tensor:
    """Map ``[N, 4]`` absolute xyxy boxes of the stored pixels through the EXIF orientation ``2..8``.

    ``raw_size`` is ``(w, h)`` before the transform. PIL's ROTATE_90 is counter-clockwise.
    """
    w, h = float(raw_size[0]), float(raw_size[1])
    x0, y0, x1, y1 = boxes.unbind(-1)
    maps = {  # point (x, y) -> (x', y') in the upright image; applied to both corners, then re-sorted
        2: lambda x, y: (w - x, y),
        3: lambda x, y: (w - x, h - y),
        4: lambda x, y: (x, h - y),
        5: lambda x, y: (y, x),
        6: lambda x, y: (h - y, x),
        7: lambda x, y: (h - y, w - x),
        8: lambda x, y: (y, w - x),
    }
    if orientation not in maps:
        return boxes
    ax, ay = maps[orientation](x0, y0)
    bx, by = maps[orientation](x1, y1)
    return torch.stack(
        (torch.minimum(ax, bx), torch.minimum(ay, by), torch.maximum(ax, bx), torch.maximum(ay, by)), dim=-1
    )


def align_boxes(boxes: Tensor, json_size: tuple[int, int], decoded: DecodedImage) -> tuple[Tensor, str]:
    """Move ``[N, 4]`` abs xyxy boxes from the frame of the annotation file into the upright image.

    ``json_size`` is the ``(w, h)`` the annotation file records. Returns the boxes and a note for the user
    (empty when nothing had to change):
    - EXIF-oriented image whose JSON size is the stored size: the boxes describe the stored pixels (the COCO
      convention, since pycocotools/torchvision/DETR ignore EXIF), so they get the same rotation/flip.
    - JSON size equal to the upright size: already aligned.
    - any other mismatch: rescaled per axis to the decoded size.
    """
    actual = decoded.image.size
    if decoded.orientation != 1 and json_size == decoded.raw_size:
        boxes = exif_transform_boxes(boxes, decoded.orientation, decoded.raw_size)
        return boxes, f"boxes moved with EXIF orientation {decoded.orientation} (JSON size is the stored size)"
    if json_size != actual:
        scale = boxes.new_tensor([actual[0] / json_size[0], actual[1] / json_size[1]] * 2)
        note = f"JSON size {json_size[0]}x{json_size[1]} != decoded {actual[0]}x{actual[1]}; boxes rescaled"
        return boxes * scale, note
    return boxes, ""
