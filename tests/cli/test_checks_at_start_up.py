"""What can be checked at start-up is checked at start-up: a command refused for a bad input refuses before any
work, so it leaves no partial output behind and costs no time."""

from __future__ import annotations

from cli_corpus import assert_one_line_error, onnx_model, run_cli, trained_run  # noqa: F401


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
