"""DETR's data augmentation, written against PIL + torch (no torchvision).

Every random choice draws from the ``random.Random`` passed in, never from the global ``random`` or torch
generators: the dataset seeds it from ``(seed, epoch, index)`` so a sample is the same whatever the number of
DataLoader workers, and an interrupted run resumes onto exactly the samples it would have seen.

Inside the pipeline boxes are absolute ``(x0, y0, x1, y1)`` pixels of the current image; only the last step
converts them to the model convention, normalised ``(cx, cy, w, h)`` of the transformed, unpadded image.

Instance masks (``[N, h, w]`` bool at the current image size, or None) go through every step with the boxes
(``mask_ops.py``: the same flip, a nearest-neighbour resize, the same crop window). They never draw from the
random stream, so a sample's image is the one it has without masks, and so are its boxes, except where a step
empties a mask (a crop, or a downscale missing a sliver: ``drop_empty``) or a crop shrinks a box to what is
left of its mask (``crop``).
"""

from __future__ import annotations

import random
from typing import Callable, Protocol, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..boxes import mask_extents, xyxy_to_cxcywh
from ..config import DataConfig
from .mask_ops import crop_masks, hflip_masks, resize_masks
from .sizes import resized_hw

Sample = tuple[Image.Image, Tensor, Tensor, Tensor | None]  # image, boxes [N, 4] abs xyxy, labels [N], masks
Output = tuple[Tensor, Tensor, Tensor, tuple[int, int]]  # image [3, H, W], boxes [N, 4] cxcywh, labels, (h, w)
# image [3, H, W], boxes [N, 4] cxcywh, labels [N], masks [N, H, W] bool, (h, w)
MaskedOutput = tuple[Tensor, Tensor, Tensor, Tensor, tuple[int, int]]


class Step(Protocol):
    """One augmentation: ``masks`` ``[N, h, w]`` bool (or None) follow the image and the boxes."""

    def __call__(self, image: Image.Image, boxes: Tensor, labels: Tensor, rng: random.Random,
                 masks: Tensor | None = None) -> Sample: ...


# ---------------------------------------------------------------------------------------------- functional
def hflip(image: Image.Image, boxes: Tensor) -> tuple[Image.Image, Tensor]:
    """Mirror the image; ``[N, 4]`` xyxy boxes map x -> w - x (corners swap so x0 < x1 still holds)."""
    w = image.width
    flipped = boxes[:, [2, 1, 0, 3]] * boxes.new_tensor([-1.0, 1.0, -1.0, 1.0]) + boxes.new_tensor([w, 0, w, 0])
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), flipped


def resize(image: Image.Image, boxes: Tensor, size: int, max_size: int | None) -> tuple[Image.Image, Tensor]:
    """Bilinear resize by :func:`resized_hw`; ``[N, 4]`` xyxy boxes scale with each axis' ratio."""
    h, w = resized_hw(image.size, size, max_size)
    if (w, h) == image.size:
        return image, boxes
    ratio = boxes.new_tensor([w / image.width, h / image.height] * 2)
    return image.resize((w, h), Image.Resampling.BILINEAR), boxes * ratio


def crop(
    image: Image.Image, boxes: Tensor, labels: Tensor, region: tuple[int, int, int, int],
    masks: Tensor | None = None,
) -> Sample:
    """Crop ``region = (top, left, h, w)``; boxes are clipped to it and the ones left with no area dropped.

    With ``[N, H, W]`` masks, a box whose mask has no pixel left in the window goes with it, and a clipped box is
    shrunk to its mask's extent where that is tighter: a window cutting a triangle leaves a box no longer tight
    on what remains (Mask-DINO's dataset mapper recomputes boxes from masks for this reason). A box is never
    grown, so sub-pixel edges stay where the mask reaches them."""
    top, left, h, w = region
    cropped = image.crop((left, top, left + w, top + h))
    shifted = boxes - boxes.new_tensor([left, top, left, top])
    clipped = torch.minimum(shifted.clamp(min=0), boxes.new_tensor([w, h, w, h]))
    if masks is not None:
        masks = crop_masks(masks, region)
        extent = mask_extents(masks).to(clipped)
        clipped = torch.cat([clipped[:, :2].maximum(extent[:, :2]), clipped[:, 2:].minimum(extent[:, 2:])], 1)
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])  # an empty mask's extent is all 0
    masks = None if masks is None else masks[keep]
    return cropped, clipped[keep], labels[keep], masks


def drop_empty(boxes: Tensor, labels: Tensor, masks: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Drop the objects whose ``[N, h, w]`` mask has no pixel (downscaling can miss a sliver entirely): an
    instance is a box and a mask, and a box without its mask would teach the mask head nothing but noise
    (Mask-DINO's mapper filters these the same way)."""
    keep = masks.flatten(1).any(1)
    return boxes[keep], labels[keep], masks[keep]


# ------------------------------------------------------------------------------------------------- steps
class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, image: Image.Image, boxes: Tensor, labels: Tensor, rng: random.Random,
                 masks: Tensor | None = None) -> Sample:
        # Draw even when p is 0 or 1 so later steps see the same random stream whatever p is.
        if rng.random() < self.p:
            image, boxes = hflip(image, boxes)
            masks = None if masks is None else hflip_masks(masks)
        return image, boxes, labels, masks


class RandomResize:
    """Resize the shorter side to one of ``sizes`` (uniform), longer side capped at ``max_size``."""

    def __init__(self, sizes: Sequence[int], max_size: int | None = None) -> None:
        if not sizes:
            raise ValueError("RandomResize needs at least one size")
        self.sizes, self.max_size = list(sizes), max_size

    def output_size(self, size_wh: tuple[int, int]) -> tuple[int, int] | None:
        """``(h, w)`` of an image of ``size_wh`` after this step when that is fixed (one size), else None."""
        return resized_hw(size_wh, self.sizes[0], self.max_size) if len(self.sizes) == 1 else None

    def __call__(self, image: Image.Image, boxes: Tensor, labels: Tensor, rng: random.Random,
                 masks: Tensor | None = None) -> Sample:
        image, boxes = resize(image, boxes, rng.choice(self.sizes), self.max_size)
        if masks is None:
            return image, boxes, labels, None
        return (image, *drop_empty(boxes, labels, resize_masks(masks, (image.height, image.width))))


class RandomSizeCrop:
    """DETR's crop: side lengths uniform in [min_size, max_size] clamped to the image, position uniform."""

    def __init__(self, min_size: int, max_size: int) -> None:
        self.min_size, self.max_size = min_size, max_size

    def __call__(self, image: Image.Image, boxes: Tensor, labels: Tensor, rng: random.Random,
                 masks: Tensor | None = None) -> Sample:
        img_w, img_h = image.size
        w = rng.randint(min(img_w, self.min_size), min(img_w, self.max_size))
        h = rng.randint(min(img_h, self.min_size), min(img_h, self.max_size))
        top, left = rng.randint(0, img_h - h), rng.randint(0, img_w - w)
        return crop(image, boxes, labels, (top, left, h, w), masks)


class RandomSelect:
    """Apply ``first`` with probability ``p``, else ``second`` (DETR's 50/50 resize vs crop branch)."""

    def __init__(self, first: Step, second: Step, p: float = 0.5) -> None:
        self.first, self.second, self.p = first, second, p

    def __call__(self, image: Image.Image, boxes: Tensor, labels: Tensor, rng: random.Random,
                 masks: Tensor | None = None) -> Sample:
        step = self.first if rng.random() < self.p else self.second
        return step(image, boxes, labels, rng, masks)


class Compose:
    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = list(steps)

    def output_size(self, size_wh: tuple[int, int]) -> tuple[int, int] | None:
        """``(h, w)`` after every step when each step's output size is fixed (test-time resizing), else None."""
        h, w = size_wh[1], size_wh[0]
        for step in self.steps:
            fixed = getattr(step, "output_size", None)
            out = fixed((w, h)) if fixed is not None else None
            if out is None:
                return None
            h, w = out
        return h, w

    def __call__(self, image: Image.Image, boxes: Tensor, labels: Tensor, rng: random.Random,
                 masks: Tensor | None = None) -> Sample:
        for step in self.steps:
            image, boxes, labels, masks = step(image, boxes, labels, rng, masks)
        return image, boxes, labels, masks


class Pipeline:
    """PIL steps, then to a normalised tensor with boxes in the model convention.

    Called as ``t(image, boxes_xyxy [N, 4] abs px, labels [N], rng)`` and returns
    ``(image [3, H, W] float32 normalised, boxes [N, 4] normalised cxcywh, labels [N], (H, W))``;
    :meth:`masked` takes and returns instance masks too. A class rather than a closure so it pickles into
    spawned DataLoader workers.
    """

    def __init__(self, steps: Step, mean: Sequence[float], std: Sequence[float]) -> None:
        self.steps = steps
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def output_size(self, size_wh: tuple[int, int]) -> tuple[int, int] | None:
        """``(h, w)`` of the tensor an upright ``(w, h)`` image becomes, when the steps fix it (the test-time
        pipeline), else None: what evaluation batches by (``sizes.canvas``) before reading any image."""
        fixed = getattr(self.steps, "output_size", None)
        return fixed(size_wh) if fixed is not None else None

    def __call__(self, image: Image.Image, boxes: Tensor, labels: Tensor, rng: random.Random) -> Output:
        pixels, normalised, labels, _, size = self._run(image, boxes, labels, None, rng)
        return pixels, normalised, labels, size

    def masked(self, image: Image.Image, boxes: Tensor, labels: Tensor, masks: Tensor,
               rng: random.Random) -> MaskedOutput:
        """As a call, with ``masks`` ``[N, h, w]`` bool at the image's size; returns
        ``(image, boxes, labels, masks [N, H, W] bool at the transformed unpadded size, (H, W))``."""
        if masks.dim() != 3 or tuple(masks.shape) != (boxes.reshape(-1, 4).shape[0], image.height, image.width):
            raise ValueError(f"masks of shape {tuple(masks.shape)} do not match {boxes.reshape(-1, 4).shape[0]} "
                             f"boxes on a {image.height}x{image.width} image")
        pixels, normalised, labels, out, size = self._run(image, boxes, labels, masks.bool(), rng)
        return pixels, normalised, labels, out, size  # type: ignore[return-value]

    def _run(self, image: Image.Image, boxes: Tensor, labels: Tensor, masks: Tensor | None,
             rng: random.Random) -> tuple[Tensor, Tensor, Tensor, Tensor | None, tuple[int, int]]:
        image = image if image.mode == "RGB" else image.convert("RGB")
        image, boxes, labels, masks = self.steps(image, boxes.float().reshape(-1, 4), labels, rng, masks)
        if masks is not None:  # whatever the steps (user-made ones too): no instance without mask pixels
            boxes, labels, masks = drop_empty(boxes, labels, masks)
        w, h = image.size
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)
        pixels = (pixels - self.mean) / self.std
        # Clamp: a box touching the border can land a rounding error outside it after the resize ratios.
        normalised = xyxy_to_cxcywh((boxes / boxes.new_tensor([w, h, w, h])).clamp(0.0, 1.0))
        return pixels.contiguous(), normalised.reshape(-1, 4), labels.long(), masks, (h, w)


# The crop branch resizes before it crops, and DETR leaves that resize uncapped: a 20000 x 1 image would become
# 400 x 8,000,000 pixels (9.6 GB) before the crop. Capped at this multiple of train_max_size, which no photograph
# reaches (an aspect ratio over 8.9 at the 600-px scale), so every real image is cropped exactly as DETR crops it.
CROP_RESIZE_CAP = 4


def build_transforms(cfg: DataConfig, train: bool) -> Callable[..., Output]:
    """DETR's recipe (DETR appendix A.4, the releases' transforms) with the sizes of ``cfg``.

    train: flip; then 50/50 multi-scale resize, or resize to a crop scale + random crop + multi-scale resize
    (the first resize capped at ``CROP_RESIZE_CAP * train_max_size``, which only absurd aspect ratios reach).
    val/test: shorter side ``test_size``, longer side at most ``test_max_size``.
    """
    if not train:
        return Pipeline(Compose([RandomResize([cfg.test_size], cfg.test_max_size)]), cfg.mean, cfg.std)
    multi_scale = RandomResize(cfg.train_scales, cfg.train_max_size)
    crop_branch = Compose(
        [RandomResize(cfg.crop_resize_scales, CROP_RESIZE_CAP * cfg.train_max_size),
         RandomSizeCrop(cfg.crop_min, cfg.crop_max), multi_scale]
    )
    steps = Compose([RandomHorizontalFlip(cfg.hflip_prob), RandomSelect(multi_scale, crop_branch)])
    return Pipeline(steps, cfg.mean, cfg.std)
