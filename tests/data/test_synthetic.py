"""The procedural COCO-format benchmark: determinism, label correctness and the scene properties it promises."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from matchdetr.data.synthetic import CATEGORIES, generate, mask_to_rle

# pycocotools' decode warns under numpy 2 on every call
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SMALL = dict(num_train=40, num_val=20, seed=0, progress=False)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _load(root: Path, split: str) -> dict:
    return json.loads((root / "annotations" / f"instances_{split}.json").read_text())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth")
    return root, generate(root, **SMALL)


def test_layout_and_summary(dataset):
    root, summary = dataset
    for split, num in (("train", 40), ("val", 20)):
        coco = _load(root, split)
        assert list(coco) == ["info", "images", "annotations", "categories"]
        assert [im["id"] for im in coco["images"]] == list(range(1, num + 1))
        assert [a["id"] for a in coco["annotations"]] == list(range(1, len(coco["annotations"]) + 1))
        jpgs = sorted(p.name for p in (root / split).glob("*.jpg"))
        assert jpgs == sorted(im["file_name"] for im in coco["images"])
        stats = summary["splits"][split]
        assert stats["images"] == num and stats["annotations"] == len(coco["annotations"])
        assert sum(stats["per_category"].values()) == sum(stats["area_ranges"].values()) == stats["annotations"]
    assert summary["elapsed_s"] > 0


def test_same_seed_is_byte_identical_and_seed_matters(dataset, tmp_path):
    root, _ = dataset
    reference = _files(root)
    generate(tmp_path / "again", **SMALL)
    assert _files(tmp_path / "again") == reference
    generate(tmp_path / "other", **{**SMALL, "seed": 1})
    other = _files(tmp_path / "other")
    assert other.keys() == reference.keys()
    assert all(other[k] != reference[k] for k in reference if k.endswith((".json", "01.jpg")))


def test_output_does_not_depend_on_workers(dataset, tmp_path):
    root, _ = dataset
    generate(tmp_path / "pool", **SMALL, workers=2)
    assert _files(tmp_path / "pool") == _files(root)


@pytest.mark.parametrize("split", ["train", "val"])
def test_all_coco_area_ranges_populated(dataset, split):
    ranges = dataset[1]["splits"][split]["area_ranges"]
    assert ranges["small"] > 0 and ranges["medium"] > 0 and ranges["large"] > 0, ranges
    areas = np.array([a["area"] for a in _load(dataset[0], split)["annotations"]])
    assert areas.min() < 32 ** 2 and areas.max() >= 96 ** 2


def test_category_ids_are_coco_like():
    ids = [c["id"] for c in CATEGORIES]
    assert len(ids) == len(set(ids)) >= 8
    assert min(ids) >= 1 and ids != list(range(len(ids))) and ids != list(range(1, len(ids) + 1))
    assert all(set(c) == {"id", "name", "supercategory"} for c in CATEGORIES)


@pytest.mark.parametrize("split", ["train", "val"])
def test_annotations_match_visible_masks(dataset, split):
    root, _ = dataset
    coco = _load(root, split)
    images = {im["id"]: im for im in coco["images"]}
    cat_ids = {c["id"] for c in coco["categories"]}
    for ann in coco["annotations"]:
        im = images[ann["image_id"]]
        h, w = im["height"], im["width"]
        x, y, bw, bh = ann["bbox"]
        assert ann["category_id"] in cat_ids and ann["iscrowd"] == 0
        assert bw > 0 and bh > 0 and x >= 0 and y >= 0 and x + bw <= w and y + bh <= h
        assert ann["segmentation"]["size"] == [h, w]
        mask = mask_utils.decode(mask_utils.frPyObjects(ann["segmentation"], h, w))
        assert mask.shape == (h, w) and ann["area"] == mask.sum() > 0
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        box = [cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1]
        assert np.allclose(box, ann["bbox"], atol=1), (box, ann["bbox"])
    # visible masks of one image are disjoint: occlusion is resolved by painting order
    for image_id in images:
        masks = [mask_utils.decode(mask_utils.frPyObjects(a["segmentation"], images[image_id]["height"],
                                                          images[image_id]["width"]))
                 for a in coco["annotations"] if a["image_id"] == image_id]
        if masks:
            assert np.sum(masks, axis=0).max() <= 1


def test_images_have_varied_sizes_within_bounds(dataset):
    root, _ = dataset
    coco = _load(root, "train")
    sizes = {(im["width"], im["height"]) for im in coco["images"]}
    assert len(sizes) > 10
    assert all(160 <= s <= 320 for wh in sizes for s in wh)
    first = coco["images"][0]
    with Image.open(root / "train" / first["file_name"]) as img:
        assert img.size == (first["width"], first["height"]) and img.mode == "RGB"


def test_counts_are_long_tailed_with_same_class_clusters(dataset):
    root, _ = dataset
    coco = _load(root, "train")
    per_image: dict[int, list[dict]] = {}
    for ann in coco["annotations"]:
        per_image.setdefault(ann["image_id"], []).append(ann)
    counts = np.array([len(per_image.get(im["id"], [])) for im in coco["images"]])
    # P(n) ~ 1/n: many sparse scenes, a few crowded ones
    assert np.mean(counts <= 3) >= 0.25 and counts.max() >= 12
    clustered = 0
    for anns in per_image.values():
        for i, a in enumerate(anns):
            for b in anns[i + 1:]:
                if a["category_id"] != b["category_id"]:
                    continue
                ca = np.add(a["bbox"][:2], np.divide(a["bbox"][2:], 2))
                cb = np.add(b["bbox"][:2], np.divide(b["bbox"][2:], 2))
                size = max(a["bbox"][2:] + b["bbox"][2:])
                clustered += np.linalg.norm(ca - cb) < size
    assert clustered >= 2


def test_loads_with_pycocotools(dataset):
    root, _ = dataset
    for split in ("train", "val"):
        coco = COCO(str(root / "annotations" / f"instances_{split}.json"))
        assert len(coco.getImgIds()) == (40 if split == "train" else 20)
        assert sorted(coco.getCatIds()) == sorted(c["id"] for c in CATEGORIES)
        ann = coco.loadAnns(coco.getAnnIds())[0]
        assert coco.annToMask(ann).sum() == ann["area"]


def test_rle_matches_pycocotools():
    rng = np.random.default_rng(0)
    for first_pixel in (False, True):
        crop = rng.random((7, 5)) < 0.5
        crop[0, 0] = first_pixel
        x0, y0 = (0, 0) if first_pixel else (3, 2)
        rle = mask_to_rle(crop, x0, y0, 12, 9)
        full = np.zeros((12, 9), dtype=np.uint8)
        full[y0:y0 + 7, x0:x0 + 5] = crop
        assert np.array_equal(mask_utils.decode(mask_utils.frPyObjects(rle, 12, 9)), full)
        assert sum(rle["counts"]) == 12 * 9


@pytest.mark.parametrize("options, message", [
    (dict(min_side=300, max_side=200), "min_side"),
    (dict(num_train=-1), "num_train"),
    (dict(num_val=-5), "num_val"),
    (dict(max_objects=0), "max_objects"),
    (dict(min_side=8), "min_side"),
    (dict(seed=-1), "seed"),
    (dict(workers=-1), "workers"),
])
def test_bad_options_raise_value_error(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        generate(tmp_path, progress=False, **options)
    assert not any(tmp_path.iterdir())  # validation happens before anything is written
