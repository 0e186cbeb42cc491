"""COCO data pipeline: label map, split resolution, transforms, determinism, collate."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader

from matchdetr.boxes import cxcywh_to_xyxy
from matchdetr.config import DataConfig
from matchdetr.data.coco import CocoDetection, DatasetError, LabelMap, SplitPaths, resolve_split
from matchdetr.data.collate import Batch, collate
from matchdetr.data.transforms import build_transforms, hflip, resized_hw
from matchdetr.structures import Target

# Small sizes so the real recipe (flip, 50/50 resize vs resize+crop+resize) runs fast on tiny images.
SMALL = DataConfig(
    train_scales=[48, 64, 80], train_max_size=140, crop_resize_scales=[60, 80], crop_min=30, crop_max=70,
    test_size=64, test_max_size=120,
)
RECT = (30, 20, 70, 60)  # xyxy of the white rectangle drawn on a black 120x90 image


def rect_image() -> Image.Image:
    image = Image.new("RGB", (120, 90))
    ImageDraw.Draw(image).rectangle((RECT[0], RECT[1], RECT[2] - 1, RECT[3] - 1), fill=(255, 255, 255))
    return image


def write_split(root: Path, n: int = 6) -> SplitPaths:
    """``n`` 120x90 JPEGs with one or two boxes each, in the layout of our generator."""
    (root / "train").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, anns = [], []
    for i in range(n):
        img = Image.new("RGB", (120, 90), (10 * i, 100, 200 - 10 * i))
        ImageDraw.Draw(img).rectangle((10 + i, 10, 50 + i, 60), fill=(250, 250, 0))
        img.save(root / "train" / f"{i}.jpg")
        images.append({"id": 100 + i, "file_name": f"{i}.jpg", "width": 120, "height": 90})
        anns.append({"id": 2 * i, "image_id": 100 + i, "category_id": 7, "bbox": [10 + i, 10, 41, 51], "iscrowd": 0})
        anns.append({"id": 2 * i + 1, "image_id": 100 + i, "category_id": 3, "bbox": [60, 30, 40, 40], "iscrowd": 0})
    cats = [{"id": 7, "name": "seven"}, {"id": 3, "name": "three"}]
    path = root / "annotations" / "instances_train.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return resolve_split(root, "train")


# ------------------------------------------------------------------------------------------------ label map
def test_label_map_sorted_non_contiguous_round_trip() -> None:
    lm = LabelMap.from_categories([{"id": 90, "name": "z"}, {"id": 1, "name": "a"}, {"id": 5, "name": "m"}])
    assert lm.category_ids == [1, 5, 90] and lm.names == ["a", "m", "z"] and len(lm) == 3
    assert [lm.to_label(c) for c in (1, 5, 90)] == [0, 1, 2]
    assert [lm.to_category(i) for i in range(3)] == [1, 5, 90]
    back = LabelMap.from_dict(json.loads(json.dumps(lm.to_dict())))
    assert back == lm and back.to_label(90) == 2
    with pytest.raises(KeyError, match="category id 2"):
        lm.to_label(2)
    with pytest.raises(DatasetError, match="duplicate"):
        LabelMap.from_categories([{"id": 1}, {"id": 1}])


# ----------------------------------------------------------------------------------------------- split paths
def test_resolve_split_layouts(tmp_path: Path) -> None:
    (tmp_path / "val2017").mkdir()
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val2017.json").write_text("{}")
    paths = resolve_split(tmp_path, "val")
    assert paths == SplitPaths(tmp_path / "val2017", tmp_path / "annotations" / "instances_val2017.json")
    (tmp_path / "val").mkdir()  # our generator's layout wins when both exist
    assert resolve_split(tmp_path, "val").images == tmp_path / "val"
    other = tmp_path / "other.json"
    other.write_text("{}")
    assert resolve_split(tmp_path, "val", annotations=str(other)).annotations == other
    with pytest.raises(DatasetError, match="instances_train.json.*instances_train2017.json"):
        (tmp_path / "train").mkdir()
        resolve_split(tmp_path, "train")
    with pytest.raises(DatasetError, match="tried .*test2017"):
        resolve_split(tmp_path, "test")


# ------------------------------------------------------------------------------------------------ transforms
def test_hflip_and_resize_geometry() -> None:
    image, boxes = hflip(Image.new("RGB", (100, 50)), torch.tensor([[10.0, 5.0, 30.0, 25.0]]))
    assert boxes.tolist() == [[70.0, 5.0, 90.0, 25.0]]
    assert resized_hw((640, 480), 800, 1333) == (800, 1066)
    assert resized_hw((2000, 500), 800, 1333) == (333, 1332)  # longer side capped
    assert resized_hw((480, 640), 480, None) == (640, 480)  # already at size: unchanged


def _bright_box(image: torch.Tensor, cfg: DataConfig) -> tuple[float, float, float, float] | None:
    """xyxy pixel extent of the pixels that are mostly white after de-normalising ``[3, H, W]``."""
    pixels = image * torch.tensor(cfg.std).view(3, 1, 1) + torch.tensor(cfg.mean).view(3, 1, 1)
    ys, xs = torch.nonzero(pixels.mean(0) > 0.5, as_tuple=True)
    if len(xs) == 0:
        return None
    return xs.min().item(), ys.min().item(), xs.max().item() + 1.0, ys.max().item() + 1.0


def test_train_transform_keeps_boxes_on_the_rectangle() -> None:
    transform = build_transforms(SMALL, train=True)
    sizes, kept, dropped = set(), 0, 0
    for seed in range(40):
        image, boxes, labels, (h, w) = transform(
            rect_image(), torch.tensor([RECT], dtype=torch.float32), torch.tensor([4]), random.Random(seed)
        )
        assert image.shape == (3, h, w) and image.dtype == torch.float32
        sizes.add((h, w))
        bright = _bright_box(image, SMALL)
        if len(boxes) == 0:  # cropped away: at most an interpolation sliver of the rectangle may remain
            dropped += 1
            assert bright is None or (bright[2] - bright[0]) * (bright[3] - bright[1]) <= 2 * max(h, w)
            continue
        kept += 1
        assert labels.tolist() == [4] and ((boxes >= 0) & (boxes <= 1)).all()
        box = cxcywh_to_xyxy(boxes[0]) * torch.tensor([w, h, w, h])
        assert bright is not None
        assert torch.allclose(box, torch.tensor(bright), atol=1.5), (seed, box, bright)
    assert kept > 20 and len(sizes) > 3  # both branches and several scales were exercised


def test_val_transform_sizes() -> None:
    transform = build_transforms(SMALL, train=False)
    boxes = torch.tensor([[0.0, 0.0, 50.0, 40.0]])
    out = transform(Image.new("RGB", (50, 40)), boxes, torch.tensor([0]), random.Random(0))
    assert out[3] == (64, 80) and out[0].shape == (3, 64, 80)
    assert torch.allclose(out[1], torch.tensor([[0.5, 0.5, 1.0, 1.0]]))
    capped = build_transforms(DataConfig(test_size=800, test_max_size=1333), train=False)
    assert capped(Image.new("RGB", (400, 100)), boxes, torch.tensor([0]), random.Random(0))[3] == (333, 1332)


# ----------------------------------------------------------------------------------------------- determinism
def test_sample_is_a_function_of_seed_epoch_index(tmp_path: Path) -> None:
    ds = CocoDetection(write_split(tmp_path), build_transforms(SMALL, train=True), seed=3)
    assert ds.label_map.category_ids == [3, 7] and ds.image_ids == [100 + i for i in range(6)]
    a, b = ds[2], ds[2]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1].boxes, b[1].boxes)
    assert a[1].image_id == 102 and a[1].orig_size == (90, 120) and a[1].size == tuple(a[0].shape[1:])
    epoch0 = [ds[i] for i in range(len(ds))]
    ds.set_epoch(1)
    epoch1 = [ds[i] for i in range(len(ds))]
    assert any(x[0].shape != y[0].shape or not torch.equal(x[0], y[0]) for x, y in zip(epoch0, epoch1))
    ds.set_epoch(0)
    assert torch.equal(ds[4][0], epoch0[4][0])


def _batches(ds: CocoDetection, workers: int, **kw: object) -> list[Batch]:
    loader = DataLoader(ds, batch_size=2, shuffle=False, num_workers=workers, collate_fn=collate, **kw)
    return list(loader)


def test_worker_count_does_not_change_batches(tmp_path: Path) -> None:
    ds = CocoDetection(write_split(tmp_path), build_transforms(SMALL, train=True), seed=1)
    ds.set_epoch(5)
    serial, parallel = _batches(ds, 0), _batches(ds, 2)
    assert len(serial) == len(parallel) == 3
    for x, y in zip(serial, parallel):
        assert torch.equal(x.images, y.images) and torch.equal(x.pixel_mask, y.pixel_mask)
        assert all(torch.equal(s.boxes, t.boxes) for s, t in zip(x.targets, y.targets))


def test_set_epoch_reaches_persistent_workers(tmp_path: Path) -> None:
    ds = CocoDetection(write_split(tmp_path), build_transforms(SMALL, train=True), seed=1)
    loader = DataLoader(ds, batch_size=6, num_workers=2, collate_fn=collate, persistent_workers=True)
    ds.set_epoch(0)
    first = next(iter(loader))
    ds.set_epoch(1)
    second = next(iter(loader))
    ds.set_epoch(1)
    expected = collate([ds[i] for i in range(6)])
    assert torch.equal(second.images, expected.images)
    assert first.images.shape != second.images.shape or not torch.equal(first.images, second.images)


# --------------------------------------------------------------------------------------------------- collate
def test_collate_pads_and_masks() -> None:
    def sample(h: int, w: int, value: float) -> tuple[torch.Tensor, Target]:
        empty = Target(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 0, (h, w), (h, w))
        return torch.full((3, h, w), value), empty

    batch = collate([sample(10, 12, 1.0), sample(14, 8, 2.0)], size_divisibility=8)
    assert batch.images.shape == (2, 3, 16, 16) and batch.pixel_mask.shape == (2, 16, 16)
    assert batch.pixel_mask.dtype == torch.bool
    assert (~batch.pixel_mask[0]).sum() == 10 * 12 and (~batch.pixel_mask[1]).sum() == 14 * 8
    assert (batch.images[0, :, :10, :12] == 1).all() and batch.images[0, :, 10:].abs().sum() == 0
    assert (batch.images[1, :, :14, :8] == 2).all() and batch.images[1, :, :, 8:].abs().sum() == 0
    assert not batch.pixel_mask[1, :14, :8].any() and batch.pixel_mask[1, :, 8:].all()
    moved = batch.to("cpu")
    assert len(moved) == 2 and moved.targets[1].size == (14, 8)
    assert collate([sample(5, 7, 0.0)]).images.shape == (1, 3, 5, 7)
