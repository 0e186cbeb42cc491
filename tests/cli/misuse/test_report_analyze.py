"""`report` and `analyze` misused: incomplete or malformed run logs, unreadable images, classes that differ."""

from __future__ import annotations

import json
import shutil

import pytest

from .corpus import assert_one_line_error, copy_dataset, edit_splits, first_classes, run_cli, run_copy, snapshot


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


@pytest.mark.parametrize("damage", ["missing", "empty", "junk"])
def test_report_without_a_metrics_record_is_one_line_and_keeps_the_run(trained_run, tmp_path, capsys, damage):
    run = run_copy(trained_run, tmp_path)
    if damage == "missing":
        (run / "metrics.jsonl").unlink()
    else:
        (run / "metrics.jsonl").write_bytes(b"" if damage == "empty" else b"\x00\xff{half a record\n")
    before = snapshot(run)
    assert_one_line_error(run_cli(["report", run], capsys), "metrics.jsonl")
    assert snapshot(run) == before  # results.csv, which training wrote, is not replaced by an empty one


def test_report_with_a_record_cut_short_warns_and_reports_the_rest(trained_run, tmp_path, capsys):
    run = run_copy(trained_run, tmp_path)
    lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    (run / "metrics.jsonl").write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # a killed write
    o = run_cli(["report", run], capsys)
    assert o.code == 0 and o.warned("metrics.jsonl", f"line {len(lines)}"), (o.err, o.warnings)
    assert len((run / "results.csv").read_text().splitlines()) == len(lines)  # the header and the whole records


def test_report_without_an_evaluation_says_what_it_skips(trained_run, tmp_path, capsys):
    run = run_copy(trained_run, tmp_path)
    shutil.rmtree(run / "eval")  # a run trained with --no-val, or stopped before its evaluation
    for name in ("results.csv", "training_curves.png"):
        (run / name).unlink(missing_ok=True)
    o = run_cli(["report", run], capsys)
    assert o.code == 0 and o.warned("eval", "per-class"), (o.err, o.warnings)
    assert (run / "results.csv").is_file() and (run / "training_curves.png").is_file()
    assert not (run / "per_class_ap.csv").exists()


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


def test_error_breakdown_on_a_dataset_without_a_class_in_common_is_one_line(synth_dir, trained_run, tmp_path, capsys):
    def alien(gt):  # other ids and other names
        for c in gt["categories"]:
            c["id"], c["name"] = c["id"] + 100, f"alien{c['id']}"
        for a in gt["annotations"]:
            a["category_id"] += 100

    data = edit_splits(copy_dataset(synth_dir, tmp_path / "data"), alien, ("val",))
    o = run_cli(["analyze", "errors", "--checkpoint", trained_run, "--data", data, "--out", tmp_path / "e",
                 "--workers", "0", "--device", "cpu"], capsys)
    assert_one_line_error(o, "instances_val.json", "no class in common", "alien1")
    assert not (tmp_path / "e").exists()


def test_error_breakdown_on_a_dataset_with_fewer_classes_counts_their_boxes(synth_dir, trained_run, tmp_path, capsys):
    data = edit_splits(copy_dataset(synth_dir, tmp_path / "data"), first_classes(3), ("val",))
    gt = json.loads((data / "annotations" / "instances_val.json").read_text())
    o = run_cli(["analyze", "errors", "--checkpoint", trained_run, "--data", data, "--out", tmp_path / "e",
                 "--workers", "0", "--device", "cpu"], capsys)
    assert o.code == 0 and o.warned("not in this dataset"), (o.err, o.warnings)
    rows = json.loads((tmp_path / "e" / "errors.json").read_text())["rows"]
    assert rows[0]["area"] == "all" and rows[0]["num_gt"] == len(gt["annotations"])


def test_error_breakdown_on_the_yolo_copy_matches_classes_by_name(synth_dir, yolo_copy, trained_run, tmp_path, capsys):
    args = ["analyze", "errors", "--checkpoint", trained_run, "--workers", "0", "--device", "cpu"]
    coco = run_cli(args + ["--data", synth_dir, "--out", tmp_path / "c"], capsys)
    yolo = run_cli(args + ["--data", yolo_copy, "--out", tmp_path / "y"], capsys)
    assert coco.code == 0 and yolo.code == 0 and yolo.warned("matched by name"), (yolo.err, yolo.warnings)
    c, y = (json.loads((tmp_path / d / "errors.json").read_text())["rows"] for d in ("c", "y"))
    assert c[0]["num_gt"] == y[0]["num_gt"] and c[0]["named"] == y[0]["named"]  # "all" (YOLO areas are the boxes')
