"""Malformed JSON in the files commands read (a converter's config.json, ``--coco-gt``, a run's ``metrics.jsonl`` and
``eval/metrics.json``): one ``matchdetr: error:`` line naming the file, or, for a run's own log files, the usable
part read and the rest skipped with a warning; never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from cli_corpus import assert_one_line_error, run_cli, sets, snapshot, train_args, trained_run  # noqa: F401


# ------------------------------------------------------------------------------------------- convert hf
def _hf_dir(root: Path, config: object) -> Path:
    root.mkdir()
    (root / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    save_file({"model.query_position_embeddings.weight": torch.zeros(3, 8)}, root / "model.safetensors")
    return root


@pytest.mark.parametrize("config,needles", [
    ({"model_type": "deformable_detr", "d_model": "wide"}, ["'d_model'", "integer"]),
    ({"model_type": "deformable_detr", "encoder_layers": 0}, ["'encoder_layers'", "integer >= 1"]),
    ({"model_type": "deformable_detr", "id2label": ["cat"]}, ["'id2label'", "object"]),
    ([], ["config.json", "JSON object"]),
    ("{not json", ["config.json", "invalid JSON"]),
], ids=["wrong-type", "zero", "id2label-list", "not-an-object", "invalid"])
def test_convert_hf_with_a_malformed_config_is_one_line(tmp_path, capsys, config, needles):
    src = _hf_dir(tmp_path / "hf", config)
    o = run_cli(["convert", "hf", src, tmp_path / "out.safetensors"], capsys)
    assert_one_line_error(o, *needles)
    assert not (tmp_path / "out.safetensors").exists()


def test_convert_hf_with_a_config_lacking_keys_reads_them_as_hf_does(tmp_path, capsys):
    # transformers fills a key config.json lacks with DeformableDetrConfig's default (d_model 256, 6 layers, ...):
    # so do we; these weights then do not fit that architecture, which is one line naming the keys
    src = _hf_dir(tmp_path / "hf", {"model_type": "deformable_detr", "use_timm_backbone": True})
    o = run_cli(["convert", "hf", src, tmp_path / "out.safetensors"], capsys)
    assert_one_line_error(o, "hf", "keys")


# ---------------------------------------------------------------------------------------- predict --coco-gt
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


# ----------------------------------------------------------------------------------------- a run's logs
def _run_copy(trained_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


@pytest.mark.parametrize("line", ["[1, 2]", "7", '"text"', "null", '{"type": "train", "iter": "two"}'])
def test_resume_skips_a_line_of_metrics_jsonl_that_is_not_a_record(synth_dir, trained_run, tmp_path, capsys, line):
    run = _run_copy(trained_run, tmp_path)
    with open(run / "metrics.jsonl", "a") as f:
        f.write(line + "\n")
    args = train_args(synth_dir, run, "--resume", "--no-val", *sets())
    args[args.index("--iters") + 1] = "3"
    o = run_cli(args, capsys)
    assert o.code == 0, o.err
    assert o.warned("metrics.jsonl", "line"), o.warnings
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(isinstance(r, dict) for r in records) and records[-1]["iter"] == 3


def test_report_skips_the_same_line(trained_run, tmp_path, capsys):
    run = _run_copy(trained_run, tmp_path)
    with open(run / "metrics.jsonl", "a") as f:
        f.write("[1, 2]\n")
    assert run_cli(["report", run], capsys).code == 0


@pytest.mark.parametrize("metrics", [{"metrics": {"AP": 1.0}}, {"per_class": {"a": 1}}, [], {"per_class": [3]}],
                         ids=["no-per-class", "per-class-not-a-list", "not-an-object", "entry-not-an-object"])
def test_report_with_an_eval_metrics_json_lacking_per_class(trained_run, tmp_path, capsys, metrics):
    run = _run_copy(trained_run, tmp_path)
    (run / "eval" / "metrics.json").write_text(json.dumps(metrics))
    before = snapshot(run / "eval")
    o = run_cli(["report", run], capsys)
    assert o.code == 0, o.err
    assert o.warned("metrics.json", "per-class"), o.warnings
    assert (run / "results.csv").is_file() and (run / "training_curves.png").is_file()
    assert snapshot(run / "eval") == before
