"""Bad-input corpus, part 1: the cases that used to lose data or give a wrong result with exit code 0.

Each case builds its broken input from nothing under tmp_path (on top of the session's synthetic set and micro
run), runs the CLI and checks the outcome: one ``matchdetr: error:`` line and exit 2, or a warning and the
correct result; where data could be lost, that every file that was there before is byte-identical afterwards.
Part 2 (validation, the error policy, the smaller items) is test_cli_error_policy.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from PIL import Image

from cli_corpus import (assert_one_line_error, canonical_results, copy_dataset, onnx_model, run_cli, sets,  # noqa: F401
                        snapshot, train_args, trained_run, truncate, yolo_copy)

from matchdetr.data.formats import ground_truth
from matchdetr.data.coco import resolve_split
from matchdetr.engine.checkpoint import checkpoint_paths, read_meta


# ------------------------------------------------------------------------------------------ run directories
def test_train_into_another_run_is_refused_and_nothing_changes(synth_dir, trained_run, tmp_path, capsys):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    before = snapshot(run)
    o = run_cli(train_args(synth_dir, run, *sets()), capsys)
    assert_one_line_error(o, "already holds a run", "--resume", "--exist-ok", "fresh --out", "metrics.jsonl")
    assert snapshot(run) == before


def test_resume_without_checkpoint_but_another_runs_files_is_refused(synth_dir, trained_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "metrics.jsonl", "model.safetensors"):  # a run killed before its first checkpoint
        shutil.copy(trained_run / name, run / name)
    before = snapshot(run)
    o = run_cli(train_args(synth_dir, run, "--resume", *sets()), capsys)
    assert_one_line_error(o, "--resume", "no complete checkpoint", "--exist-ok")
    assert snapshot(run) == before


def test_exist_ok_replaces_exactly_the_old_runs_files(synth_dir, trained_run, tmp_path, capsys):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    (run / "notes.txt").write_text("mine")
    (run / "checkpoints" / "README").write_text("mine too")
    old_ids = {read_meta(w).get("run_id") for _, w, _ in checkpoint_paths(run)}
    o = run_cli(train_args(synth_dir, run, "--exist-ok", "--no-val", *sets()), capsys)
    assert o.code == 0, o.err
    assert (run / "notes.txt").read_text() == "mine" and (run / "checkpoints" / "README").read_text() == "mine too"
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in lines if r["type"] == "train"] == [1]  # the new run's line only, nothing appended
    assert not (run / "eval").exists()  # the old run's evaluations went with it (this run has --no-val)
    new_ids = {read_meta(w).get("run_id") for _, w, _ in checkpoint_paths(run)}
    assert [i for i, _, _ in checkpoint_paths(run)] == [1] and new_ids.isdisjoint(old_ids)


def test_an_empty_existing_folder_is_a_fine_run_directory(synth_dir, tmp_path, capsys):
    run = tmp_path / "empty"
    run.mkdir()
    o = run_cli(train_args(synth_dir, run, "--no-val", *sets()), capsys)
    assert o.code == 0, o.err
    assert (run / "model.safetensors").is_file() and "train 1/1" in o.out  # --no-progress prints plain lines


def test_pruning_never_deletes_another_runs_checkpoint(synth_dir, trained_run, tmp_path, capsys):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))  # checkpoints 1 and 2 of this run
    ckdir = run / "checkpoints"
    foreign = tmp_path / "foreign"
    assert run_cli(train_args(synth_dir, foreign, "--no-val", *sets()), capsys).code == 0
    for suffix in (".safetensors", ".state.pt"):  # another run's checkpoint, older than this run's
        shutil.copy(foreign / "checkpoints" / f"iter_0000001{suffix}", ckdir / f"iter_0000000{suffix}")
    kept = snapshot(ckdir / "iter_0000000.safetensors") | snapshot(ckdir / "iter_0000000.state.pt")
    args = train_args(synth_dir, run, "--resume", "--no-val", *sets())  # the run's own keep_last=2 applies
    args[args.index("--iters") + 1] = "3"
    o = run_cli(args, capsys)
    assert o.code == 0, o.err
    assert [i for i, _, _ in checkpoint_paths(run)] == [0, 2, 3]  # its own oldest (1) pruned, the foreign 0 kept
    assert snapshot(ckdir / "iter_0000000.safetensors") | snapshot(ckdir / "iter_0000000.state.pt") == kept


def test_exist_ok_refuses_to_delete_its_own_init_checkpoint(synth_dir, trained_run, tmp_path, capsys):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    before = snapshot(run)
    o = run_cli(train_args(synth_dir, run, "--exist-ok", "--init", str(run), *sets()), capsys)
    assert_one_line_error(o, "--init", "inside --out")
    assert snapshot(run) == before


# ----------------------------------------------------------------------------------------------- predict
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


def test_predict_the_same_file_twice_predicts_it_once(synth_dir, trained_run, tmp_path, capsys):
    images = _images(tmp_path / "imgs", ["a.png"], synth_dir)
    o = run_cli(["predict", images / "a.png", images, "--checkpoint", trained_run, "--out", tmp_path / "p"], capsys)
    assert o.code == 0 and sum("more than once" in w for w in o.warnings) == 1 and o.warned("a.png")
    assert len(json.loads((tmp_path / "p" / "detections.json").read_text())) == 1


# ------------------------------------------------------------------------------------------------- eval
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


# ---------------------------------------------------------------------------------------------- classes
def test_eval_on_the_yolo_copy_matches_classes_by_name(synth_dir, yolo_copy, trained_run, tmp_path, capsys):
    coco, yolo = _eval(trained_run, synth_dir, tmp_path / "c", capsys), _eval(trained_run, yolo_copy, tmp_path / "y", capsys)
    assert coco.code == 0 and yolo.code == 0, yolo.err
    assert yolo.warned("matched by name", "'square' 2 -> 1")
    a = canonical_results(tmp_path / "c" / "results.json", synth_dir / "annotations" / "instances_val.json")
    b = canonical_results(tmp_path / "y" / "results.json", ground_truth(resolve_split(yolo_copy, "val")))
    assert a == b and len(a) > 0  # same image, same class name, box and score, detection by detection


def test_init_across_layouts_keeps_the_heads_of_matching_names(yolo_copy, trained_run, tmp_path, capsys):
    from matchdetr import api

    out = tmp_path / "ft"
    o = run_cli(train_args(yolo_copy, out, "--init", trained_run, "--no-val",
                           *sets("train.lr=0", "train.lr_backbone=0")), capsys)
    assert o.code == 0, o.err
    assert "the same 10 classes matched by name" in o.out and "class set differs" not in o.out
    before, after = api.load(trained_run).state_dict(), api.load(out).state_dict()
    assert all((before[k] == after[k]).all() for k in before if "class_embed" in k)  # lr 0: loaded, not re-drawn


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
