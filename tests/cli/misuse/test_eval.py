"""`eval` misused: unreadable images, classes that do not match the checkpoint's, mask scoring without masks, a
.pth, its own results file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from .corpus import (assert_one_line_error, box_only, canonical_results, copy_dataset, edit_splits, run_cli, snapshot,
                     truncate)

from matchdetr.data.coco import resolve_split
from matchdetr.data.formats import ground_truth


# -------------------------------------------------------------------------------------- unreadable images
def _eval(run: Path, data: Path, out: Path, capsys, *more: str):
    return run_cli(["eval", "--checkpoint", run, "--data", data, "--out", out, "--device", "cpu", "--workers", "0",
                    "--batch-size", "1", *more], capsys)


def test_eval_with_an_unreadable_image_never_shifts_the_others(synth_dir, trained_run, tmp_path, capsys):
    damaged = copy_dataset(synth_dir, tmp_path / "data")
    victim = sorted((damaged / "val").iterdir())[1]
    truncate(victim)
    clean, broken = _eval(trained_run, synth_dir, tmp_path / "clean", capsys), _eval(trained_run, damaged, tmp_path / "bad", capsys)
    assert clean.code == 0 and broken.code == 0
    assert broken.warned(victim.name, "scored as an image without detections"), broken.warnings
    gt = json.loads((synth_dir / "annotations" / "instances_val.json").read_text())
    victim_id = next(i["id"] for i in gt["images"] if i["file_name"] == victim.name)
    a = json.loads((tmp_path / "clean" / "results.json").read_text())
    b = json.loads((tmp_path / "bad" / "results.json").read_text())
    assert not [d for d in b if d["image_id"] == victim_id]
    assert [d for d in a if d["image_id"] != victim_id] == b  # every other image keeps its own detections


# ------------------------------------------------------------------------------------------------ classes
def test_eval_on_the_yolo_copy_matches_classes_by_name(synth_dir, yolo_copy, trained_run, tmp_path, capsys):
    coco, yolo = _eval(trained_run, synth_dir, tmp_path / "c", capsys), _eval(trained_run, yolo_copy, tmp_path / "y", capsys)
    assert coco.code == 0 and yolo.code == 0, yolo.err
    assert yolo.warned("matched by name", "'square' 2 -> 1")
    a = canonical_results(tmp_path / "c" / "results.json", synth_dir / "annotations" / "instances_val.json")
    b = canonical_results(tmp_path / "y" / "results.json", ground_truth(resolve_split(yolo_copy, "val")))
    assert a == b and len(a) > 0  # same image, same class name, box and score, detection by detection


def _renamed_val(synth_dir: Path, root: Path, rename) -> Path:
    data = copy_dataset(synth_dir, root)
    ann = data / "annotations" / "instances_val.json"
    gt = json.loads(ann.read_text())
    rename(gt)
    ann.write_text(json.dumps(gt))
    return data


def test_eval_with_other_class_names_warns_naming_them(synth_dir, trained_run, tmp_path, capsys):
    def upper(gt):
        for c in gt["categories"]:
            c["name"] = c["name"].upper()

    data = _renamed_val(synth_dir, tmp_path / "data", upper)
    o = _eval(trained_run, data, tmp_path / "e", capsys)
    assert o.code == 0 and o.warned("class names differ", "'CIRCLE'", "'circle'"), o.warnings


def test_eval_with_no_class_in_common_is_one_line(synth_dir, trained_run, tmp_path, capsys):
    def alien(gt):
        for c in gt["categories"]:
            c["id"], c["name"] = c["id"] + 100, f"alien{c['id']}"
        for a in gt["annotations"]:
            a["category_id"] += 100

    data = _renamed_val(synth_dir, tmp_path / "data", alien)
    assert_one_line_error(_eval(trained_run, data, tmp_path / "e", capsys), "no class in common", "alien")


# ------------------------------------------------------------------------------------------ masks
@pytest.mark.parametrize("missing", ["results", "ground-truth"])
def test_mask_scoring_without_masks_is_one_line_naming_the_file(synth_dir, trained_run, tmp_path, capsys, missing):
    data = synth_dir if missing == "results" else edit_splits(copy_dataset(synth_dir, tmp_path / "data"), box_only)
    o = run_cli(["eval", "--predictions", trained_run / "eval" / "results.json", "--data", data, "--iou-type", "segm",
                 "--out", tmp_path / "e"], capsys)  # a box model's results file
    if missing == "results":
        assert_one_line_error(o, "results.json", "entry 0", "missing key(s) ['segmentation']")
    else:
        assert_one_line_error(o, "instances_val.json", "has no segmentation", "segm evaluation needs")
    assert not list((tmp_path / "e").glob("*"))  # refused before anything was scored or written


# ------------------------------------------------------------------------------------------------- inputs
def test_a_pth_given_to_eval_points_to_convert(synth_dir, tmp_path, capsys):
    pth = tmp_path / "release.pth"
    torch.save({"model": {"w": torch.zeros(1)}}, pth)
    o = run_cli(["eval", "--checkpoint", pth, "--data", synth_dir], capsys)
    assert_one_line_error(o, "release.pth", "matchdetr convert official")


def test_eval_may_rescore_the_results_file_in_its_own_out_folder(synth_dir, tmp_path, capsys):
    out = tmp_path / "e"
    out.mkdir()
    preds = out / "results.json"  # what `eval --checkpoint --out e` wrote; `--predictions` writes no results.json
    preds.write_text("[]")
    before = snapshot(preds)
    o = run_cli(["eval", "--predictions", preds, "--data", synth_dir, "--out", out], capsys)
    assert o.code == 0, o.err
    assert (out / "metrics.json").is_file() and snapshot(preds) == before
