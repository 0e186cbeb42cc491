"""`report` and `analyze` misused: malformed run logs, unreadable images."""

from __future__ import annotations

import json

import pytest

from .corpus import copy_dataset, run_cli, run_copy, snapshot


# ------------------------------------------------------------------------------------------------- report
def test_report_skips_the_same_line(trained_run, tmp_path, capsys):
    run = run_copy(trained_run, tmp_path)
    with open(run / "metrics.jsonl", "a") as f:
        f.write("[1, 2]\n")
    assert run_cli(["report", run], capsys).code == 0


@pytest.mark.parametrize("metrics", [{"metrics": {"AP": 1.0}}, {"per_class": {"a": 1}}, [], {"per_class": [3]}],
                         ids=["no-per-class", "per-class-not-a-list", "not-an-object", "entry-not-an-object"])
def test_report_with_an_eval_metrics_json_lacking_per_class(trained_run, tmp_path, capsys, metrics):
    run = run_copy(trained_run, tmp_path)
    (run / "eval" / "metrics.json").write_text(json.dumps(metrics))
    before = snapshot(run / "eval")
    o = run_cli(["report", run], capsys)
    assert o.code == 0, o.err
    assert o.warned("metrics.json", "per-class"), o.warnings
    assert (run / "results.csv").is_file() and (run / "training_curves.png").is_file()
    assert snapshot(run / "eval") == before


# ------------------------------------------------------------------------------------------------ analyze
def test_error_breakdown_and_unstable_score_with_an_unreadable_image(synth_dir, trained_run, tmp_path, capsys):
    damaged = copy_dataset(synth_dir, tmp_path / "data")
    victim = sorted((damaged / "val").iterdir())[0]
    victim.write_bytes(b"")
    o = run_cli(["analyze", "errors", "--checkpoint", trained_run, "--data", damaged, "--out", tmp_path / "e",
                 "--workers", "0", "--device", "cpu"], capsys)
    assert o.code == 0 and o.warned(victim.name, "without detections"), (o.err, o.warnings)
    assert json.loads((tmp_path / "e" / "errors.json").read_text())["images"] == 8
    o = run_cli(["analyze", "unstable", "--checkpoint", trained_run, "--data", damaged, "--out", tmp_path / "u",
                 "--images", "4", "--device", "cpu"], capsys)
    assert o.code == 0 and o.warned(victim.name)
    assert json.loads((tmp_path / "u" / "unstable.json").read_text())["images"] == 3  # the unreadable one left out
