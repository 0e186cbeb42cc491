"""YOLO segment labels (Ultralytics' ``class x1 y1 x2 y2 ...``) read as COCO polygons, and their masks."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from matchdetr.boxes import cxcywh_to_xyxy
from matchdetr.config import DataConfig
from matchdetr.data.coco import CocoDetection, DatasetWarning, resolve_split
from matchdetr.boxes import mask_extents as mask_boxes
from matchdetr.data.transforms import Compose, Pipeline
from matchdetr.data.yolo import polygon_of_line

mask_api = pytest.importorskip("faster_coco_eval.core.mask")
IDENTITY = Pipeline(Compose([]), DataConfig().mean, DataConfig().std)
TRIANGLE = "0 0.1 0.1 0.9 0.2 0.4 0.8"  # 3 points: the fewest a segment has
SQUARE = "1 0.5 0.1 0.9 0.1 0.9 0.5 0.5 0.5"


def yolo(root: Path, labels: dict[str, str], size: tuple[int, int] = (40, 20), orientation: int = 1) -> Path:
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    exif = Image.Exif()
    exif[0x0112] = orientation
    for name, text in labels.items():
        Image.new("RGB", size).save(root / "images" / "train" / f"{name}.png", exif=exif.tobytes())
        (root / "labels" / "train" / f"{name}.txt").write_text(text)
    (root / "data.yaml").write_text("names: [a, b]\ntrain: images/train\nval: images/train\n")
    return root


def read(root: Path) -> tuple[CocoDetection, str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = CocoDetection(resolve_split(root, "train"), IDENTITY, masks=True)
    return ds, "\n".join(str(w.message) for w in caught if issubclass(w.category, DatasetWarning))


def test_polygon_of_line() -> None:
    assert polygon_of_line("3 0.5 0.5 0.25 0.125") is None
    assert polygon_of_line(TRIANGLE) == [0.1, 0.1, 0.9, 0.2, 0.4, 0.8]


def test_segment_lines_become_coco_polygons_and_masks(tmp_path: Path) -> None:
    odd = "0 0.1 0.1 0.2 0.2 0.3 0.3 0.4"  # 7 coordinates: dropped, named by file and line
    same_extent = "1 0.5 0.1 0.9 0.5 0.5 0.5 0.9 0.1"  # the square's extent, but another shape: an object too
    ds, text = read(yolo(tmp_path, {"p": f"{TRIANGLE}\n{odd}\n{SQUARE}\n{same_extent}\n0 0.5 0.5 0.2 0.2\n"}))
    assert "label lines dropped: odd number of polygon coordinates (7)" in text and "p.txt:2" in text
    assert "1 annotations without a segmentation: masks made from their boxes (annotation ids) (4)" in text
    anns = ds.coco_gt["annotations"]
    assert [len(a.get("segmentation", [])) for a in anns] == [1, 1, 1, 0]
    triangle = anns[0]["segmentation"][0]
    assert triangle == pytest.approx([4.0, 2.0, 36.0, 4.0, 16.0, 16.0])  # pixels of the 40x20 image
    assert anns[0]["bbox"] == pytest.approx([4.0, 2.0, 32.0, 14.0])  # the polygon's extent
    assert anns[0]["area"] == pytest.approx(212.0)  # the triangle's (shoelace), not its box's 448
    assert anns[1]["area"] == pytest.approx(16.0 * 8.0) and anns[3]["area"] == 8.0 * 4.0  # a box line: its box
    _, target = ds[0]
    assert target.masks is not None and target.masks.shape == (4, 20, 40)
    for got, ann in zip(target.masks[:3], anns):
        ref = mask_api.decode(mask_api.merge(mask_api.frPyObjects(ann["segmentation"], 20, 40))).astype(bool)
        assert torch.equal(got, torch.from_numpy(ref))
    assert mask_boxes(target.masks[3:]).tolist() == [[16.0, 8.0, 24.0, 12.0]]  # the box line's filled box


def test_segments_of_an_exif_rotated_image_stay_on_the_upright_object(tmp_path: Path) -> None:
    """Labels are drawn on the upright image; the COCO polygon is in the stored frame (the convention), so its
    mask, rotated back upright by the dataset, covers what the label outlines on the upright image."""
    ds, _ = read(yolo(tmp_path, {"r": f"{TRIANGLE}\n{SQUARE}\n"}, size=(40, 20), orientation=6))
    assert (ds.image_info(0)["width"], ds.image_info(0)["height"]) == (40, 20)  # stored size, as COCO has it
    with pytest.warns(DatasetWarning, match="boxes moved with EXIF orientation 6"):
        _, target = ds[0]
    h, w = target.size
    assert (h, w) == (40, 20) and target.masks is not None  # upright: 20 wide, 40 high
    for got, line in zip(target.masks, (TRIANGLE, SQUARE)):
        xy = np.array(polygon_of_line(line)) * np.array([w, h] * (len(polygon_of_line(line)) // 2))
        upright = torch.from_numpy(mask_api.decode(mask_api.merge(mask_api.frPyObjects([xy.tolist()], h, w))) > 0)
        iou = (got & upright).sum() / (got | upright).sum()
        assert iou > 0.85, iou  # rasterised in another frame: edge pixels may differ, never the object
    box = cxcywh_to_xyxy(target.boxes) * torch.tensor([w, h, w, h])
    assert torch.allclose(mask_boxes(target.masks), box, atol=1.0)
