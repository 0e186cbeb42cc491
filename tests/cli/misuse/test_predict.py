"""`predict` misused: outputs onto inputs, unreadable images, nonsense values, a malformed or missing --coco-gt."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from .corpus import assert_one_line_error, run_cli, snapshot, truncate


# ------------------------------------------------------------------------------------- outputs and inputs
def _images(folder: Path, names: list[str], synth_dir: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted((synth_dir / "val").iterdir())
    for i, name in enumerate(names):
        Image.open(sources[i % len(sources)]).convert("RGB").save(folder / name)
    return folder


def test_predict_out_equal_to_the_input_folder_is_refused(synth_dir, trained_run, tmp_path, capsys):
    images = _images(tmp_path / "imgs", ["a.png", "b.jpg"], synth_dir)
    before = snapshot(images)
    o = run_cli(["predict", images, "--checkpoint", trained_run, "--out", images, "--device", "cpu"], capsys)
    assert_one_line_error(o, "is an input folder")
    assert snapshot(images) == before


def test_predict_out_equal_to_an_input_file_is_refused(synth_dir, trained_run, tmp_path, capsys):
    images = _images(tmp_path / "imgs", ["a.png"], synth_dir)
    before = snapshot(images)
    o = run_cli(["predict", images / "a.png", "--checkpoint", trained_run, "--out", images / "a.png"], capsys)
    assert_one_line_error(o, "is an input file")
    assert snapshot(images) == before


def test_predict_output_landing_on_an_input_is_refused(synth_dir, trained_run, tmp_path, capsys):
    images = _images(tmp_path / "imgs", ["a.png", "b.jpg"], synth_dir)  # a.png's output would be imgs/a.png
    before = snapshot(images)
    o = run_cli(["predict", images / "a.png", images / "b.jpg", "--checkpoint", trained_run, "--out", images], capsys)
    assert_one_line_error(o, "would write over the input", "a.png")
    assert snapshot(images) == before


def test_predict_coco_json_onto_an_input_is_refused(synth_dir, trained_run, tmp_path, capsys):
    images = _images(tmp_path / "imgs", ["a.png"], synth_dir)
    before = snapshot(images)
    o = run_cli(["predict", images, "--checkpoint", trained_run, "--out", tmp_path / "p", "--coco-json",
                 images / "a.png"], capsys)
    assert_one_line_error(o, "--coco-json", "would write over the input")
    assert snapshot(images) == before


def test_predict_coco_json_onto_its_coco_gt_is_refused(synth_dir, trained_run, tmp_path, capsys):
    gt = Path(shutil.copy(synth_dir / "annotations" / "instances_val.json", tmp_path / "gt.json"))
    before = snapshot(gt)
    o = run_cli(["predict", synth_dir / "val", "--checkpoint", trained_run, "--out", tmp_path / "p", "--coco-gt", gt,
                 "--coco-json", gt, "--device", "cpu"], capsys)
    assert_one_line_error(o, "--coco-json", "--coco-gt", "gt.json")
    assert snapshot(gt) == before
    assert not (tmp_path / "p").exists()  # refused before anything was written


def test_predict_coco_json_beside_the_images_may_be_rewritten(synth_dir, trained_run, tmp_path, capsys):
    images = Path(shutil.copytree(synth_dir / "val", tmp_path / "imgs"))
    for _ in range(2):  # the second run replaces its own results file: not an input (not an image)
        o = run_cli(["predict", images, "--checkpoint", trained_run, "--out", tmp_path / "p", "--coco-json",
                     images / "results.json", "--device", "cpu"], capsys)
        assert o.code == 0, o.err
    assert isinstance(json.loads((images / "results.json").read_text()), list)


def test_predict_same_stems_get_distinct_outputs(synth_dir, trained_run, tmp_path, capsys):
    _images(tmp_path / "A", ["img.jpg", "x.jpg", "x.png"], synth_dir)
    _images(tmp_path / "B", ["img.jpg"], synth_dir)
    before = snapshot(tmp_path / "A") | {f"B/{k}": v for k, v in snapshot(tmp_path / "B").items()}
    out = tmp_path / "pred"
    o = run_cli(["predict", tmp_path / "A", tmp_path / "B", "--checkpoint", trained_run, "--out", out,
                 "--threshold", "0", "--device", "cpu"], capsys)
    assert o.code == 0, o.err
    records = json.loads((out / "detections.json").read_text())
    assert len(records) == 4 and len({r["file"] for r in records}) == 4
    assert len({r["annotated"] for r in records}) == 4 and all(Path(r["annotated"]).is_file() for r in records)
    assert sorted(p.name for p in out.glob("*.png")) == ["A_img.png", "B_img.png", "x_jpg.png", "x_png.png"]
    assert snapshot(tmp_path / "A") | {f"B/{k}": v for k, v in snapshot(tmp_path / "B").items()} == before


def test_predict_the_same_file_twice_predicts_it_once(synth_dir, trained_run, tmp_path, capsys):
    images = _images(tmp_path / "imgs", ["a.png"], synth_dir)
    o = run_cli(["predict", images / "a.png", images, "--checkpoint", trained_run, "--out", tmp_path / "p"], capsys)
    assert o.code == 0 and sum("more than once" in w for w in o.warnings) == 1 and o.warned("a.png")
    assert len(json.loads((tmp_path / "p" / "detections.json").read_text())) == 1


# -------------------------------------------------------------------------------------- unreadable images
def test_predict_skips_a_bad_image_and_does_the_rest(synth_dir, trained_run, tmp_path, capsys):
    images = _images(tmp_path / "imgs", ["a.png", "c.jpg"], synth_dir)
    (images / "b.jpg").write_bytes(b"not an image")
    o = run_cli(["predict", images, "--checkpoint", trained_run, "--out", tmp_path / "p", "--device", "cpu"], capsys)
    assert o.code == 0 and o.warned("b.jpg", "skipped"), (o.err, o.warnings)
    records = json.loads((tmp_path / "p" / "detections.json").read_text())
    assert [Path(r["file"]).name for r in records] == ["a.png", "c.jpg"] and "1 unreadable" in o.out


def test_predict_with_nothing_readable_fails_in_one_line(trained_run, tmp_path, capsys):
    images = tmp_path / "imgs"
    images.mkdir()
    (images / "a.jpg").write_bytes(b"")
    (images / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    o = run_cli(["predict", images, "--checkpoint", trained_run, "--out", tmp_path / "p"], capsys)
    assert_one_line_error(o, "none of the 2 inputs could be read")
    assert o.warned("a.jpg") and o.warned("b.png")


def test_onnx_predict_skips_a_bad_image(synth_dir, onnx_model, tmp_path, capsys):
    images = _images(tmp_path / "imgs", ["a.png"], synth_dir)
    truncate(Path(shutil.copy(sorted((synth_dir / "val").iterdir())[0], images / "b.jpg")))
    o = run_cli(["predict", images, "--model", onnx_model, "--out", tmp_path / "p"], capsys)
    assert o.code == 0 and o.warned("b.jpg", "skipped"), (o.err, o.warnings)
    assert [Path(r["file"]).name for r in json.loads((tmp_path / "p" / "detections.json").read_text())] == ["a.png"]


def test_onnx_predict_with_nothing_readable_fails_in_one_line(onnx_model, tmp_path, capsys):
    (tmp_path / "bad.jpg").write_bytes(b"GIF89a junk")
    o = run_cli(["predict", tmp_path / "bad.jpg", "--model", onnx_model, "--out", tmp_path / "p"], capsys)
    assert_one_line_error(o, "none of the 1 inputs could be read")


def test_onnx_mask_model_skips_a_bad_image_and_keeps_the_masks_of_the_rest(synth_dir, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    import matchdetr
    from conftest import MICRO

    torch.manual_seed(0)
    model = matchdetr.build("maskdino-tiny", num_classes=3, **dict(s.split("=", 1) for s in MICRO))
    onnx = tmp_path / "mask.onnx"
    assert run_cli(["export", "--checkpoint", model.save(tmp_path / "mask.safetensors"), "--out", onnx], capsys).code == 0
    images = _images(tmp_path / "imgs", ["a.png"], synth_dir)
    truncate(Path(shutil.copy(sorted((synth_dir / "val").iterdir())[1], images / "b.jpg")))
    o = run_cli(["predict", images, "--model", onnx, "--out", tmp_path / "p", "--threshold", "0", "--coco-json",
                 tmp_path / "r.json"], capsys)
    assert o.code == 0 and o.warned("b.jpg", "skipped"), (o.err, o.warnings)
    (record,) = json.loads((tmp_path / "p" / "detections.json").read_text())
    assert Path(record["file"]).name == "a.png" and record["detections"]
    assert all(d["segmentation"]["size"] == list(Image.open(images / "a.png").size[::-1]) for d in record["detections"])
    results = json.loads((tmp_path / "r.json").read_text())
    assert len(results) == len(record["detections"]) and all("segmentation" in r for r in results)


# ---------------------------------------------------------------------------------------- nonsense values
@pytest.mark.parametrize("value", ["2", "-1", "nan", "inf", "high"])
def test_predict_threshold_must_be_a_probability(trained_run, tmp_path, capsys, value):
    o = run_cli(["predict", tmp_path, "--checkpoint", trained_run, "--threshold", value], capsys)
    assert_one_line_error(o, "--threshold must be in [0, 1]", repr(value))


@pytest.mark.parametrize("args,needle", [(["--compile=maybe"], "--compile ignored explicit argument 'maybe'"),
                                         (["--compile", "maybe"], "unrecognized arguments: maybe")])
def test_predict_compile_takes_no_value(trained_run, tmp_path, capsys, args, needle):
    o = run_cli(["predict", tmp_path, "--checkpoint", trained_run, "--out", tmp_path / "p", *args], capsys)
    assert_one_line_error(o, needle)
    assert not (tmp_path / "p").exists()


# ---------------------------------------------------------------------------------------------- --coco-gt
# What can be checked at start-up is checked at start-up: refused before any work, no partial output.
@pytest.mark.parametrize("content,needle", [
    ("[]", "JSON object"),
    ('{"images": {"a": 1}}', "'images'"),
    ('{"images": [{"file_name": "x.jpg", "id": "one"}]}', "images[0]"),
    ("{", "invalid JSON"),
], ids=["list", "images-not-a-list", "id-not-an-integer", "invalid"])
def test_predict_with_a_malformed_coco_gt_is_one_line(synth_dir, trained_run, tmp_path, capsys, content, needle):
    gt = tmp_path / "gt.json"
    gt.write_text(content)
    o = run_cli(["predict", synth_dir / "val", "--checkpoint", trained_run, "--out", tmp_path / "p",
                 "--coco-gt", gt, "--coco-json", tmp_path / "r.json", "--device", "cpu"], capsys)
    assert_one_line_error(o, "gt.json", needle)


def test_predict_with_a_missing_coco_gt_refuses_before_writing_anything(synth_dir, trained_run, tmp_path, capsys):
    o = run_cli(["predict", synth_dir / "val", "--checkpoint", trained_run, "--out", tmp_path / "p", "--coco-gt",
                 tmp_path / "missing.json", "--coco-json", tmp_path / "r.json", "--device", "cpu"], capsys)
    assert_one_line_error(o, "missing.json")
    assert not list((tmp_path / "p").glob("*.png")) and not (tmp_path / "r.json").exists()


def test_predict_with_a_coco_gt_lacking_an_input_refuses_before_writing_anything(synth_dir, trained_run, tmp_path,
                                                                                  capsys):
    gt = tmp_path / "gt.json"
    gt.write_text('{"images": [{"id": 1, "file_name": "other.jpg"}]}')
    o = run_cli(["predict", synth_dir / "val", "--checkpoint", trained_run, "--out", tmp_path / "p", "--coco-gt",
                 gt, "--coco-json", tmp_path / "r.json", "--device", "cpu"], capsys)
    assert_one_line_error(o, "gt.json", "no image entry")
    assert not list((tmp_path / "p").glob("*.png"))


def test_onnx_predict_with_a_missing_coco_gt_refuses_before_writing_anything(synth_dir, onnx_model, tmp_path, capsys):
    o = run_cli(["predict", synth_dir / "val", "--model", onnx_model, "--out", tmp_path / "p", "--coco-gt",
                 tmp_path / "missing.json", "--coco-json", tmp_path / "r.json"], capsys)
    assert_one_line_error(o, "missing.json")
    assert not list((tmp_path / "p").glob("*.png"))
