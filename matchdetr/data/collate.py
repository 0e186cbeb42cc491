"""Batching images of different sizes: zero-pad to a common size and record where the padding is.

Training pads a batch to its largest image (:func:`collate`). Evaluation and prediction give each image one
answer whatever shares its batch (:func:`collate_canvases`): every image is padded to its own *canvas*, its size
rounded up to :data:`CANVAS_MULTIPLE`, and only images of one canvas are batched together. Padding moves a
detector's outputs (the backbone's convolutions and the neck's GroupNorm read the padded pixels, EfficientNet's
TF "same" padding follows the padded size), so padding that depends on the neighbours would move an image's
scores with them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..structures import Target
from .sizes import CANVAS_MULTIPLE, canvas  # noqa: F401  (re-exported: the canvas rule lives with the size rule)


@dataclass
class Batch:
    """A padded batch.

    images: ``[B, 3, H, W]`` float32, normalised; padding is 0 (the mean colour after normalisation, as DETR).
    pixel_mask: ``[B, H, W]`` bool, True on padding (the key-padding-mask convention of attention layers).
    targets: one :class:`Target` per image; boxes are normalised by each image's own unpadded size, and masks
        (instance segmentation) stay ``[N, h_i, w_i]`` at it, unpadded: the mask loss pads or samples them.
    """

    images: Tensor
    pixel_mask: Tensor
    targets: list[Target]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        return Batch(
            self.images.to(device, non_blocking=non_blocking),
            self.pixel_mask.to(device, non_blocking=non_blocking),
            [t.to(device) for t in self.targets],
        )

    def pin_memory(self) -> "Batch":
        """Called by ``DataLoader(pin_memory=True)`` on custom batch types."""
        return Batch(self.images.pin_memory(), self.pixel_mask.pin_memory(), self.targets)

    def __len__(self) -> int:
        return int(self.images.shape[0])


def collate_canvases(samples: list[tuple[Tensor, Target]],
                     multiple: int = CANVAS_MULTIPLE) -> list[tuple[list[int], Batch]]:
    """Samples grouped by :func:`canvas`, each group one :class:`Batch` padded to exactly that canvas, with the
    positions in ``samples`` of its images (groups in order of their first sample). A batch sampler that groups
    by canvas (``sampler.CanvasBatchSampler``) makes this one group; the split only guards what it cannot see
    (an image whose decoded size differs from its annotation's)."""
    if not samples:
        raise ValueError("collate_canvases: empty list of samples")
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (image, _) in enumerate(samples):
        groups.setdefault(canvas(image.shape[1:], multiple), []).append(i)
    return [(idx, collate([samples[i] for i in idx], multiple)) for idx in groups.values()]


def collate(samples: list[tuple[Tensor, Target]], size_divisibility: int = 1) -> Batch:
    """Stack ``(image [3, h_i, w_i], Target)`` samples into a :class:`Batch`.

    Images are placed top-left and zero-padded to the largest ``h``/``w`` in the batch, rounded up to a
    multiple of ``size_divisibility`` (backbones with stride 32 need none; some deployments want it).
    """
    if not samples:
        raise ValueError("collate: empty list of samples")
    images = [image for image, _ in samples]
    div = max(int(size_divisibility), 1)
    height = -(-max(img.shape[1] for img in images) // div) * div
    width = -(-max(img.shape[2] for img in images) // div) * div
    batch = images[0].new_zeros((len(images), images[0].shape[0], height, width))
    mask = torch.ones((len(images), height, width), dtype=torch.bool, device=images[0].device)
    for i, img in enumerate(images):
        h, w = img.shape[1:]
        batch[i, :, :h, :w].copy_(img)
        mask[i, :h, :w] = False
    return Batch(batch, mask, [target for _, target in samples])
