"""How a detector treats the padding of a batch (the :class:`~matchdetr.models.detector.Detector`'s two switches).

Most DETRs carry a padding mask: attention skips the padded pixels and every box is normalised to its image's
valid region (``structures.py``). The Mask-DINO release does not: its meta-architecture pads each batch to the
largest image and then to a multiple of 32 (``maskdino.py:250``, ``ImageList.from_tensors(images, 32)``) and
calls its head without a mask (``maskdino.py:265/277``, ``self.sem_seg_head(features)``), so its encoder and
decoder read the padding as image content and its boxes are fractions of the padded input; inference scales
them by the padded size (``maskdino.py:323``). Its training crops are padded inside the transform
(``FixedSizeCrop``, ``coco_instance_new_baseline_dataset_mapper.py:66``; the padding mask it computes there is a
TODO never used), so there too the model saw the padding as content. A converted checkpoint reproduces the
release only when given the same inputs: these helpers let a Detector do that while keeping our contract (boxes
of the valid image in and out).
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor

from ..structures import DetectorOutput, Target


def pad_to_multiple(images: Tensor, pixel_mask: Tensor, multiple: int) -> tuple[Tensor, Tensor]:
    """Zero-pad ``images [B, 3, H, W]`` bottom and right to a multiple of ``multiple`` in H and W; the
    ``pixel_mask [B, H, W]`` (True on padding) grows with it. Unchanged when already a multiple."""
    if multiple <= 1:
        return images, pixel_mask
    if torch.jit.is_tracing():  # ONNX export: the pad amounts from the traced size, so the graph follows the input
        ph, pw = (-torch._shape_as_tensor(images)[-2:]) % multiple
    else:
        ph, pw = -images.shape[-2] % multiple, -images.shape[-1] % multiple
        if not ph and not pw:
            return images, pixel_mask
    return F.pad(images, (0, pw, 0, ph)), F.pad(pixel_mask, (0, pw, 0, ph), value=True)


def valid_fraction(pixel_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """``pixel_mask [B, H, W]`` -> ``[B, 4]`` the valid image's share of the padded input, ``(w, h, w, h)``: the
    factor from boxes of the valid image to boxes of the padded input (the image sits top-left); float32 at
    least."""
    dtype = torch.promote_types(dtype, torch.float32)
    h = (~pixel_mask[:, :, 0]).to(dtype).mean(1)  # a mean, not a count over H: an exported graph follows the size
    w = (~pixel_mask[:, 0, :]).to(dtype).mean(1)
    return torch.stack((w, h, w, h), -1)


def targets_on_padded_input(targets: list[Target], fraction: Tensor) -> list[Target]:
    """Ground-truth boxes (normalised cxcywh of each valid image) as boxes of the padded input, for the parts
    that read them inside the model (denoising queries)."""
    return [replace(t, boxes=t.boxes * fraction[i].to(t.boxes)) for i, t in enumerate(targets)]


def outputs_on_valid_image(out: DetectorOutput, fraction: Tensor) -> None:
    """Every prediction set's boxes, predicted on the padded input, as boxes of each valid image (in place):
    the final and auxiliary layers and the plug-ins' sets (proposals, initial, denoising)."""
    scale = fraction[:, None].to(out.boxes)
    out.boxes = out.boxes / scale
    sets = {id(p): p for p in list(out.aux) + [s.prediction for s in out.extra]}  # each set once
    for p in sets.values():
        p.boxes = p.boxes / scale
