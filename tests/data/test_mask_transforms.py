"""Instance masks through the data pipeline: mask geometry, every transform step, the random stream, collate."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from matchdetr.boxes import cxcywh_to_xyxy
from matchdetr.config import DataConfig
from matchdetr.data.collate import collate
from matchdetr.data.images import _TRANSPOSE, exif_transform_boxes
from matchdetr.boxes import mask_extents as mask_boxes
from matchdetr.data.mask_ops import box_masks, crop_masks, orient_masks, resize_masks
from matchdetr.data.transforms import (
    RandomHorizontalFlip,
    RandomResize,
    RandomSizeCrop,
    build_transforms,
    crop,
)
from matchdetr.structures import Target

SMALL = DataConfig(  # as tests/data/test_coco_dataset.py: the real recipe at sizes that run fast
    train_scales=[48, 64, 80], train_max_size=140, crop_resize_scales=[60, 80], crop_min=30, crop_max=70,
    test_size=64, test_max_size=120,
)
W, H = 120, 90


def random_boxes(rng: random.Random, n: int = 3) -> torch.Tensor:
    """``[n, 4]`` integer-cornered xyxy boxes inside a W x H image."""
    out = []
    for _ in range(n):
        x0, y0 = rng.randrange(0, W - 4), rng.randrange(0, H - 4)
        out.append([x0, y0, rng.randrange(x0 + 2, W + 1), rng.randrange(y0 + 2, H + 1)])
    return torch.tensor(out, dtype=torch.float32)


def painted(boxes: torch.Tensor) -> torch.Tensor:
    """The filled rectangles of integer boxes, painted pixel by pixel (the reference for ``box_masks``)."""
    masks = torch.zeros((len(boxes), H, W), dtype=torch.bool)
    for m, (x0, y0, x1, y1) in zip(masks, boxes.long().tolist()):
        m[y0:y1, x0:x1] = True
    return masks


# --------------------------------------------------------------------------------------------- mask geometry
def test_box_masks_and_mask_boxes_invert_each_other() -> None:
    boxes = random_boxes(random.Random(0), 8)
    assert torch.equal(box_masks(boxes, (H, W)), painted(boxes))
    assert torch.equal(mask_boxes(painted(boxes)), boxes)
    tiny = box_masks(torch.tensor([[10.2, 5.6, 10.4, 5.9]]), (H, W))  # under a pixel: the pixel at its centre
    assert tiny.sum() == 1 and tiny[0, 5, 10]
    assert mask_boxes(torch.zeros(2, 4, 5, dtype=torch.bool)).tolist() == [[0.0] * 4] * 2


@pytest.mark.parametrize("orientation", range(2, 9))
def test_orient_masks_moves_pixels_as_pil_and_the_box_map(orientation: int) -> None:
    mask = torch.from_numpy(np.random.default_rng(orientation).random((40, 50)) > 0.5)
    pil = np.array(Image.fromarray(mask.numpy().astype(np.uint8) * 255).transpose(_TRANSPOSE[orientation])) > 0
    assert torch.equal(orient_masks(mask[None], orientation)[0], torch.from_numpy(pil))
    box = torch.tensor([[5.0, 10.0, 20.0, 30.0]])
    rect = torch.zeros((1, 40, 50), dtype=torch.bool)
    rect[0, 10:30, 5:20] = True
    assert torch.equal(mask_boxes(orient_masks(rect, orientation)), exif_transform_boxes(box, orientation, (50, 40)))


def test_resize_samples_under_pixel_centres_and_crop_pads_outside() -> None:
    rect = painted(torch.tensor([[30.0, 20.0, 70.0, 60.0]]))
    for size in ((45, 60), (180, 240), (91, 33)):
        scale = torch.tensor([size[1] / W, size[0] / H] * 2)
        assert (mask_boxes(resize_masks(rect, size)) - torch.tensor([30.0, 20, 70, 60]) * scale).abs().max() <= 0.5
    window = crop_masks(rect, (50, 60, 50, 70))  # reaches 10 px past the right and bottom edges
    assert window.shape == (1, 50, 70) and mask_boxes(window).tolist() == [[0.0, 0.0, 10.0, 10.0]]


# ---------------------------------------------------------------------------------------------- transforms
STEPS = {
    "flip": RandomHorizontalFlip(1.0),
    "resize_down": RandomResize([37], 100),
    "resize_up": RandomResize([150, 211], 400),
    "crop": RandomSizeCrop(20, 70),
    "train_recipe": build_transforms(SMALL, train=True).steps,
    "val_recipe": build_transforms(SMALL, train=False).steps,
}


@pytest.mark.parametrize("name", sorted(STEPS))
def test_filled_box_stays_its_box_through_every_step(name: str) -> None:
    step = STEPS[name]
    for seed in range(25):
        rng = random.Random(seed)
        boxes = random_boxes(rng)
        image, out, labels, masks = step(Image.new("RGB", (W, H)), boxes, torch.arange(3), rng, painted(boxes))
        assert masks is not None and masks.dtype == torch.bool
        assert masks.shape == (len(out), image.height, image.width) and len(labels) == len(out)
        assert masks.flatten(1).any(1).all(), "a box whose mask was emptied is dropped with it"
        assert torch.allclose(mask_boxes(masks), out, atol=1.0), (name, seed, mask_boxes(masks), out)


def test_pipeline_masks_match_the_normalised_boxes_and_size() -> None:
    transform = build_transforms(SMALL, train=True)
    for seed in range(25):
        rng = random.Random(seed)
        boxes = random_boxes(rng)
        image, out, _, masks, (h, w) = transform.masked(Image.new("RGB", (W, H)), boxes, torch.arange(3),
                                                        painted(boxes), rng)
        assert image.shape == (3, h, w) and masks.shape == (len(out), h, w)
        assert torch.allclose(mask_boxes(masks), cxcywh_to_xyxy(out) * torch.tensor([w, h, w, h]), atol=1.0)
    with pytest.raises(ValueError, match=r"masks of shape \(2, 90, 120\) do not match 3 boxes"):
        transform.masked(Image.new("RGB", (W, H)), boxes, torch.arange(3), painted(boxes)[:2], random.Random(0))


def test_masks_do_not_change_the_random_stream() -> None:
    """Same seeds with and without masks: the same images and random state after the pipeline, and the same
    boxes except those dropped with their emptied mask (slivers) or tightened by a crop."""
    transform = build_transforms(SMALL, train=True)
    dropped = 0
    for seed in range(60):
        boxes = random_boxes(random.Random(1000 + seed), 4)
        off_rng, on_rng = random.Random(seed), random.Random(seed)
        off = transform(Image.new("RGB", (W, H), (seed, 80, 160)), boxes, torch.arange(4), off_rng)
        on = transform.masked(Image.new("RGB", (W, H), (seed, 80, 160)), boxes, torch.arange(4), painted(boxes),
                              on_rng)
        assert torch.equal(off[0], on[0]) and off[3] == on[4] and off_rng.getstate() == on_rng.getstate()
        kept = [off[2].tolist().index(label) for label in on[2].tolist()]
        assert kept == sorted(kept), "the kept boxes keep their order"
        h, w = off[3]
        scale = torch.tensor([w, h, w, h])
        # a crop tightens an edge by under half a pixel of its window, which the last resize scales by <= 80/30
        assert torch.allclose(cxcywh_to_xyxy(off[1][kept]) * scale, cxcywh_to_xyxy(on[1]) * scale, atol=1.4)
        for i in sorted(set(range(len(off[2]))) - set(kept)):
            dropped += 1
            x0, y0, x1, y1 = (cxcywh_to_xyxy(off[1][i]) * scale).tolist()
            assert min(x1 - x0, y1 - y0) < 3.0, "only a sliver's mask can vanish (upscaled after a crop at most)"
    assert dropped < 10


def test_crop_drops_box_and_mask_together_and_tightens_cut_boxes() -> None:
    boxes = torch.tensor([[0.0, 0.0, 40.0, 40.0], [50.0, 50.0, 60.0, 60.0], [15.0, 15.0, 25.0, 25.0],
                          [0.0, 10.0, 30.0, 40.0]])
    masks = painted(boxes)
    masks[0, 1:, 1:] = False  # an L: only row 0 and column 0, both outside the window below
    masks[3] = torch.tril(torch.ones(H, W, dtype=torch.bool), diagonal=-10) & masks[3]  # a triangle under y = x + 10
    image, out, labels, cropped = crop(Image.new("RGB", (W, H)), boxes, torch.arange(4), (10, 10, 20, 20), masks)
    assert image.size == (20, 20) and labels.tolist() == [2, 3]
    assert out[0].tolist() == [5.0, 5.0, 15.0, 15.0] and cropped[0].sum() == 100
    # what the window leaves of the triangle (x <= y - 10) is columns 10..19, rows 20..29: the clipped box
    # [0, 0, 20, 20] of the window shrinks to that
    assert out[1].tolist() == [0.0, 10.0, 10.0, 20.0] == mask_boxes(cropped[1:]).tolist()[0]
    no_masks = crop(Image.new("RGB", (W, H)), boxes, torch.arange(4), (10, 10, 20, 20))
    assert no_masks[2].tolist() == [0, 2, 3] and no_masks[3] is None  # without masks: the box rule alone


# --------------------------------------------------------------------------------------------------- collate
def test_collate_and_to_keep_the_unpadded_masks() -> None:
    def sample(h: int, w: int, n: int) -> tuple[torch.Tensor, Target]:
        masks = torch.rand(n, h, w) > 0.5
        return torch.zeros(3, h, w), Target(torch.rand(n, 4), torch.zeros(n, dtype=torch.long), 0, (h, w), (h, w),
                                            masks=masks)

    samples = [sample(10, 12, 2), sample(14, 8, 0)]
    batch = collate(samples, size_divisibility=8).to("cpu")
    assert batch.images.shape == (2, 3, 16, 16)
    for (_, target), got in zip(samples, batch.targets):
        assert got.masks is not None and torch.equal(got.masks, target.masks) and got.masks.shape[1:] == got.size
    assert batch.targets[0].repeated(2).masks.shape == (4, 10, 12)
