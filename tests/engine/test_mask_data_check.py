"""The start-up check of a mask model's data (engine/mask_data.py): box-only training data and a validation GT
that segm evaluation would refuse are one line before any training, and before any prediction when evaluating."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from matchdetr.config import DataConfig
from matchdetr.data.coco import CocoDetection, DatasetError, DatasetWarning, SplitPaths
from matchdetr.data.transforms import Compose, Pipeline
from matchdetr.engine.evaluate import evaluate
from matchdetr.engine.mask_data import check_mask_data

CFG = DataConfig()
IDENTITY = Pipeline(Compose([]), CFG.mean, CFG.std)
W, H = 40, 30
SQUARE = [[5, 5, 20, 5, 20, 20, 5, 20]]


def _split(root: Path, segmentations: list) -> CocoDetection:
    (root / "images").mkdir(parents=True)
    Image.new("RGB", (W, H)).save(root / "images" / "a.png")
    anns = [{"id": i, "image_id": 1, "category_id": 1, "bbox": [5, 5, 15, 15], "area": 225.0, "iscrowd": 0,
             **({"segmentation": s} if s is not None else {})} for i, s in enumerate(segmentations, 1)]
    path = root / "ann.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}],
                                "annotations": anns, "categories": [{"id": 1, "name": "x"}]}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        return CocoDetection(SplitPaths(root / "images", path), IDENTITY, masks=True, substitute=False)


def test_segmented_data_passes(tmp_path):
    check_mask_data(_split(tmp_path / "t", [SQUARE, SQUARE]), _split(tmp_path / "v", [SQUARE]))


def test_box_only_training_data_is_refused(tmp_path):
    with pytest.raises(DatasetError, match=r"t/ann.json: none of its 2 annotations has a usable segmentation"):
        check_mask_data(_split(tmp_path / "t", [None, None]), None)


def test_some_box_only_annotations_are_fine_for_training(tmp_path):
    check_mask_data(_split(tmp_path / "t", [None, SQUARE]), None)  # warned about when read, trained on their box


@pytest.mark.parametrize("bad,needle", [
    (None, "annotation id 2 has no segmentation"),
    ({"size": [H + 1, W], "counts": [W * (H + 1)]}, "annotation id 2: segmentation size"),
    ([[1, 1, 9, 1, 9, float("nan")]], "annotation id 2: non-finite polygon coordinates"),
], ids=["box-only", "rle-of-the-wrong-size", "nan-polygon"])
def test_a_validation_gt_segm_evaluation_refuses_is_refused_at_start_up(tmp_path, bad, needle):
    train, val = _split(tmp_path / "t", [SQUARE]), _split(tmp_path / "v", [SQUARE, bad])
    with pytest.raises(DatasetError, match=needle) as info:
        check_mask_data(train, val)
    assert "v/ann.json" in str(info.value) and "\n" not in str(info.value)


def test_evaluating_a_mask_model_checks_the_gt_before_predicting(tmp_path):
    val = _split(tmp_path / "v", [SQUARE, {"size": [H + 1, W], "counts": [W * (H + 1)]}])
    with pytest.raises(DatasetError, match="segmentation size"):
        evaluate(object(), val, torch.device("cpu"), num_workers=0)  # the model is never called
