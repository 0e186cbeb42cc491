"""Memory bounded by the image, whatever the numbers in the annotations or the image's shape.

A polygon coordinate of 1e9 made the mask rasteriser allocate gigabytes (``std::bad_alloc``); a polygon with NaN
fell back to its box when read but was rasterised anyway when scored; one 20000 x 1 image escaped the size cap
and padded its whole batch to 20000 px. Geometry is validated and clipped to the image when read (and when
scored), and every image is resized within the size cap whatever its aspect ratio.
"""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from matchdetr.config import DataConfig
from matchdetr.data.coco import CocoDetection, DatasetWarning, SplitPaths
from matchdetr.data.collate import collate
from matchdetr.data.polygons import clip_polygon
from matchdetr.data.transforms import CROP_RESIZE_CAP, Compose, Pipeline, build_transforms, resized_hw
from matchdetr.engine.coco_eval import EvalInputError, evaluate_detections

CFG = DataConfig()
IDENTITY = Pipeline(Compose([]), CFG.mean, CFG.std)
W, H = 40, 30
FAR = [5.0, 5.0, 1e9, 5.0, 5.0, 20.0]  # a triangle with one vertex a billion pixels to the right


def _split(root: Path, anns: list[dict], size: tuple[int, int] = (W, H), names: tuple[str, ...] = ("a.png",)
           ) -> SplitPaths:
    (root / "images").mkdir(parents=True, exist_ok=True)
    images = []
    for i, name in enumerate(names, 1):
        Image.new("RGB", size, (120, 120, 120)).save(root / "images" / name)
        images.append({"id": i, "file_name": name, "width": size[0], "height": size[1]})
    for i, a in enumerate(anns, 1):
        a.update(id=i, category_id=1, iscrowd=0, image_id=a.get("image_id", 1))
    path = root / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "x"}]}))
    return SplitPaths(root / "images", path)


# ---------------------------------------------------------------------------------------------- polygons
def test_clip_polygon_keeps_what_lies_inside():
    assert clip_polygon([1, 1, 5, 1, 5, 5], 10, 10) == [1, 1, 5, 1, 5, 5]  # inside: unchanged
    clipped = np.array(clip_polygon([-10, 2, 20, 2, 20, 8, -10, 8], 10, 10)).reshape(-1, 2)
    assert clipped[:, 0].min() == 0 and clipped[:, 0].max() == 10 and set(clipped[:, 1]) == {2, 8}
    assert clip_polygon([20, 20, 30, 20, 30, 30], 10, 10) == []  # wholly outside: nothing left


def test_a_polygon_far_outside_its_image_is_clipped_when_read(tmp_path):
    paths = _split(tmp_path, [{"segmentation": [FAR], "bbox": [5, 5, 35, 15]}])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = CocoDetection(paths, IDENTITY, masks=True)
    assert any("clipped to" in str(w.message) and "(1)" in str(w.message) for w in caught), [str(w.message) for w in caught]
    _, target = ds[0]  # no multi-GB rasterisation
    mask = target.masks[0]
    assert mask.shape == (H, W) and mask[7:19, 7:39].all() and not mask[:4].any() and not mask[22:].any()


def test_the_same_polygon_is_scored_within_the_image(tmp_path):
    gt = json.loads(_split(tmp_path, [{"segmentation": [FAR], "bbox": [5, 5, 35, 15], "area": 500.0}])
                    .annotations.read_text())
    inside = [5, 5, W, 5, W, 20, 5, 20]
    dets = [{"image_id": 1, "category_id": 1, "score": 0.9, "segmentation": [inside]},
            {"image_id": 1, "category_id": 1, "score": 0.5, "segmentation": [FAR]}]  # results are clipped too
    result = evaluate_detections(gt, dets, iou_type="segm")
    assert result.metrics["segm_AP50"] == pytest.approx(100.0)


def test_a_polygon_with_nan_in_the_scoring_gt_is_one_line(tmp_path):
    gt = json.loads(_split(tmp_path, [{"segmentation": [[1, 1, 9, 1, 9, float("nan")]], "bbox": [1, 1, 8, 8]}])
                    .annotations.read_text())
    dets = [{"image_id": 1, "category_id": 1, "score": 0.9, "segmentation": [[1, 1, 9, 1, 9, 9]]}]
    with pytest.raises(EvalInputError, match=r"annotation id 1: non-finite polygon coordinates") as info:
        evaluate_detections(gt, dets, iou_type="segm")
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------- image size
@pytest.mark.parametrize("wh", [(20000, 1), (1, 20000), (20000, 2), (20000, 20), (20000, 40)])
def test_every_image_is_resized_within_the_cap(wh):
    h, w = resized_hw(wh, 800, 1333)
    assert max(h, w) <= 2 * 1333 and min(h, w) >= 1  # DETR's own rounding may overshoot by a pixel of the short side
    if min(wh) <= 2:
        assert max(h, w) == 1333


def test_sane_images_keep_detrs_sizes():
    assert resized_hw((640, 480), 800, 1333) == (800, 1066)
    assert resized_hw((2000, 500), 800, 1333) == (333, 1332)
    assert resized_hw((480, 640), 480, None) == (640, 480)


def test_a_20000_by_1_training_image_stays_within_the_size_cap(tmp_path):
    cfg = DataConfig(train_scales=[96, 112], train_max_size=160, crop_resize_scales=[96], crop_min=64, crop_max=96)
    paths = _split(tmp_path, [{"bbox": [100, 0, 5000, 1], "image_id": 1}, {"bbox": [2, 2, 20, 20], "image_id": 2}],
                   size=(20000, 1), names=("strip.png",))
    Image.new("RGB", (64, 48)).save(paths.images / "b.png")
    data = json.loads(paths.annotations.read_text())
    data["images"].append({"id": 2, "file_name": "b.png", "width": 64, "height": 48})
    paths.annotations.write_text(json.dumps(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        ds = CocoDetection(paths, build_transforms(cfg, train=True), seed=0)
        for epoch in range(12):  # both branches (multi-scale resize; resize + crop + resize), both flips
            ds.set_epoch(epoch)
            batch = collate([ds[0], ds[1]])
            # DETR's rounding of the shorter side may overshoot the cap (a 90 x 1 crop at scale 112: 2 x 180 px),
            # never by more than the cap itself; before, this batch was 20000 px wide
            assert max(batch.images.shape[-2:]) <= 2 * cfg.train_max_size, (epoch, batch.images.shape)


def test_the_crop_branch_never_builds_a_huge_intermediate_image():
    cfg = DataConfig()
    steps = build_transforms(cfg, train=True).steps  # flip, then resize-or-(resize, crop, resize)
    sizes: list[tuple[int, int]] = []
    real = Image.Image.resize

    def spy(self, size, *args, **kwargs):
        sizes.append(size)
        return real(self, size, *args, **kwargs)

    image = Image.new("RGB", (20000, 1))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Image.Image, "resize", spy)
        for seed in range(8):
            steps(image, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), random.Random(seed))
    assert sizes and max(max(s) for s in sizes) <= CROP_RESIZE_CAP * cfg.train_max_size, sizes
