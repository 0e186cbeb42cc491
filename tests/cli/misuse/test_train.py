"""`train` misused: run directories, --resume / --init / --exist-ok, nonsense values, unusable data, a full disk."""

from __future__ import annotations

import errno
import json
import shutil
import struct
import zlib
from pathlib import Path

import pytest
import torch

from .corpus import (assert_one_line_error, box_only, copy_dataset, edit_splits, first_classes, run_cli, run_copy, sets,
                     snapshot, train_args)

import matchdetr.engine.checkpoint as ck
from matchdetr.cli import build_parser, main
from matchdetr.engine.checkpoint import checkpoint_paths, read_meta


# ---------------------------------------------------------------------------------------- run directories
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


@pytest.mark.parametrize("init, needles", [
    ("", ("--init", "--out", "is an input folder")),                    # the run folder itself
    ("model.safetensors", ("--init", "--out", "would write model.safetensors over")),  # a file train writes
    ("checkpoints/iter_0000002.safetensors", ("--init", "inside --out", "--exist-ok")),  # a file it would delete
])
def test_exist_ok_refuses_to_delete_its_own_init_checkpoint(synth_dir, trained_run, tmp_path, capsys, init, needles):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    before = snapshot(run)
    o = run_cli(train_args(synth_dir, run, "--exist-ok", "--init", str(run / init) if init else str(run), *sets()),
                capsys)
    assert_one_line_error(o, *needles)
    assert snapshot(run) == before


@pytest.mark.parametrize("line", ["[1, 2]", "7", '"text"', "null", '{"type": "train", "iter": "two"}'])
def test_resume_skips_a_line_of_metrics_jsonl_that_is_not_a_record(synth_dir, trained_run, tmp_path, capsys, line):
    run = run_copy(trained_run, tmp_path)
    with open(run / "metrics.jsonl", "a") as f:
        f.write(line + "\n")
    args = train_args(synth_dir, run, "--resume", "--no-val", *sets())
    args[args.index("--iters") + 1] = "3"
    o = run_cli(args, capsys)
    assert o.code == 0, o.err
    assert o.warned("metrics.jsonl", "line"), o.warnings
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(isinstance(r, dict) for r in records) and records[-1]["iter"] == 3


def test_exist_ok_and_resume_are_documented_in_train_help():
    text = " ".join(build_parser()._subparsers._group_actions[0].choices["train"].format_help().split())
    assert "--exist-ok" in text and "deleted first" in text and "--resume" in text


def test_resume_with_another_model_continues_the_runs_own_and_says_so(synth_dir, trained_run, tmp_path, capsys):
    run = run_copy(trained_run, tmp_path)
    args = train_args(synth_dir, run, "--resume", "--no-val", *sets(), model="dino-tiny")
    args[args.index("--iters") + 1] = "3"
    o = run_cli(args, capsys)
    assert o.code == 0, o.err
    assert o.warned("the run's own values are kept", "model.arch.kind (run: 'detr', given: 'dino')"), o.warnings
    assert json.loads((run / "config.json").read_text())["preset"] == "detr-tiny"
    assert read_meta(run / "checkpoints" / "iter_0000003.safetensors")["config"]["model"]["arch"]["kind"] == "detr"


@pytest.mark.parametrize("data", ["fewer-classes", "yolo-copy"])
def test_resume_on_data_with_other_classes_is_refused_and_nothing_changes(synth_dir, yolo_copy, trained_run, tmp_path,
                                                                          capsys, data):
    run = run_copy(trained_run, tmp_path)
    other = (edit_splits(copy_dataset(synth_dir, tmp_path / "data"), first_classes(3)) if data == "fewer-classes"
             else yolo_copy)  # the YOLO copy: the same names under other ids
    before = snapshot(run)
    args = train_args(other, run, "--resume", "--no-val", *sets())
    args[args.index("--iters") + 1] = "3"
    o = run_cli(args, capsys)
    assert_one_line_error(o, "instances_train.json" if data == "fewer-classes" else "data.yaml",
                          "categories differ from the checkpoint's")
    assert snapshot(run) == before


# ------------------------------------------------------------------------------------------------- --init
def test_init_across_layouts_keeps_the_heads_of_matching_names(yolo_copy, trained_run, tmp_path, capsys):
    from matchdetr import api

    out = tmp_path / "ft"
    o = run_cli(train_args(yolo_copy, out, "--init", trained_run, "--no-val",
                           *sets("train.lr=0", "train.lr_backbone=0")), capsys)
    assert o.code == 0, o.err
    assert "the same 10 classes matched by name" in o.out and "class set differs" not in o.out
    before, after = api.load(trained_run).state_dict(), api.load(out).state_dict()
    assert all((before[k] == after[k]).all() for k in before if "class_embed" in k)  # lr 0: loaded, not re-drawn


def test_init_from_another_family_is_one_line_naming_both_presets(synth_dir, trained_run, tmp_path, capsys):
    o = run_cli(train_args(synth_dir, tmp_path / "run", "--init", trained_run, *sets(), model="dino-tiny"), capsys)
    assert_one_line_error(o, "model.safetensors", "preset 'detr-tiny'", "does not fit preset 'dino-tiny'")
    assert not list((tmp_path / "run").glob("*"))  # refused before a file of the run was written


def test_init_with_fewer_classes_keeps_the_rows_of_the_classes_it_has(synth_dir, trained_run, tmp_path, capsys):
    from matchdetr import api

    data = edit_splits(copy_dataset(synth_dir, tmp_path / "data"), first_classes(3))
    out = tmp_path / "ft"
    o = run_cli(train_args(data, out, "--init", trained_run, "--no-val", *sets("train.lr=0", "train.lr_backbone=0")),
                capsys)
    assert o.code == 0, o.err
    assert "class set differs (10 -> 3 classes): 3 matched by name keep their rows" in o.out
    old, new = api.load(trained_run), api.load(out)
    assert len(new.names) == 3 and set(new.names) <= set(old.names)
    before, after = old.state_dict(), new.state_dict()
    for name in new.names:
        i, j = old.names.index(name), new.names.index(name)
        assert all((before[k][i] == after[k][j]).all() for k in before if "class_embed" in k), name


# ---------------------------------------------------------------------------------------- nonsense values
@pytest.mark.parametrize("option,value,needle", [
    ("--iters", "0", "--iters must be an integer >= 1"),
    ("--iters", "-3", "--iters must be an integer >= 1"),
    ("--epochs", "0", "--epochs must be an integer >= 1"),
    ("--batch-size", "0", "--batch-size must be an integer >= 1"),
])
def test_train_numeric_options(synth_dir, tmp_path, capsys, option, value, needle):
    args = train_args(synth_dir, tmp_path / "run", *sets())
    if option in args:
        args[args.index(option) + 1] = value
    else:
        args = _without_iters(args) + [option, value]
    assert_one_line_error(run_cli(args, capsys), needle)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def _without_iters(args: list[str]) -> list[str]:
    i = args.index("--iters")
    return args[:i] + args[i + 2 :]


@pytest.mark.parametrize("key,value", [("model.transformer.num_queries", "0"), ("model.transformer.num_queries", "-5"),
                                       ("train.keep_last", "0"), ("train.log_every", "0"), ("train.iters", "-3")])
def test_config_values_that_make_no_sense(synth_dir, tmp_path, capsys, key, value):
    args = train_args(synth_dir, tmp_path / "run", *sets(f"{key}={value}"))
    if key == "train.iters":  # --iters would override it
        args = _without_iters(args)
    assert_one_line_error(run_cli(args, capsys), f"'{key}' must be", value)
    assert not (tmp_path / "run").exists()


def test_compile_that_is_not_a_bool_is_one_line(synth_dir, tmp_path, capsys):
    o = run_cli(train_args(synth_dir, tmp_path / "run", *sets("train.compile=maybe")), capsys)
    assert_one_line_error(o, "'train.compile' expects a bool", "'maybe'")
    assert not (tmp_path / "run").exists()


def test_warmup_longer_than_the_run_warns_and_trains(synth_dir, tmp_path, capsys):
    o = run_cli(train_args(synth_dir, tmp_path / "run", "--no-val", *sets("train.warmup_iters=50")), capsys)
    assert o.code == 0 and o.warned("train.warmup_iters=50 is longer than the run (1 iterations)")


def test_unknown_set_key_suggests_the_right_one(synth_dir, tmp_path, capsys):
    o = run_cli(train_args(synth_dir, tmp_path / "run", *sets("train.keeplast=1")), capsys)
    assert_one_line_error(o, "unknown config key 'train.keeplast'", "did you mean 'train.keep_last'")


@pytest.mark.parametrize("argv,needle", [
    (["train", "--model", "detr-tiny", "--out", "o", "--lr", "1e-4"], "--lr is the config key train.lr: --set train.lr=1e-4"),
    (["train", "--model", "detr-tiny", "--out", "o", "--num-queries=50"],
     "--set model.transformer.num_queries=50"),
    (["train", "--model", "detr-tiny", "--out", "o", "--no-such-thing"], "unrecognized arguments: --no-such-thing"),
])
def test_an_unknown_option_that_is_a_config_key_points_to_set(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err


# ------------------------------------------------------------------------------------------ unusable data
# A training split none of whose images can be decoded (every file over PIL's decompression-bomb limit) is
# one line naming the split, how many images were tried and why, with or without DataLoader workers.
def test_a_train_split_without_annotations_is_refused(synth_dir, tmp_path, capsys):
    data = copy_dataset(synth_dir, tmp_path / "data")
    ann = data / "annotations" / "instances_train.json"
    ann.write_text(json.dumps({**json.loads(ann.read_text()), "annotations": []}))
    o = run_cli(train_args(data, tmp_path / "run", *sets()), capsys)
    assert_one_line_error(o, "instances_train.json", "no usable boxes")


def test_a_data_yaml_naming_too_few_classes_is_refused(yolo_copy, tmp_path, capsys):
    data = copy_dataset(yolo_copy, tmp_path / "yolo")
    (data / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames:\n  0: circle\n  1: square\n")
    o = run_cli(train_args(data, tmp_path / "run", *sets()), capsys)
    assert_one_line_error(o, "data.yaml", "names 2 classes", "list every class in 'names'")


def test_a_mask_preset_on_box_only_data_is_one_line(synth_dir, tmp_path, capsys):
    data = edit_splits(copy_dataset(synth_dir, tmp_path / "data"), box_only)
    o = run_cli(train_args(data, tmp_path / "run", *sets(), model="maskdino-tiny"), capsys)
    assert_one_line_error(o, "instances_train.json", "has a usable segmentation", "train a box model")
    assert not list((tmp_path / "run").glob("*"))


def test_dataset_error_inside_a_dataloader_worker_is_one_line(synth_dir, tmp_path, capsys):
    data = copy_dataset(synth_dir, tmp_path / "data")
    for image in (data / "train").iterdir():
        image.write_bytes(b"junk")
    args = train_args(data, tmp_path / "run", "--no-val", *sets("data.num_workers=2"))
    assert_one_line_error(run_cli(args, capsys), "no readable image")


def _bomb(path: Path, width: int = 20000, height: int = 20000) -> None:
    """A PNG whose header claims ``width x height`` (the data is a stub), as a decompression bomb does."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("workers", [0, 2])
def test_a_training_split_without_a_decodable_image_is_one_clear_line(synth_dir, tmp_path, capsys, workers):
    data = Path(shutil.copytree(synth_dir, tmp_path / "data"))
    images = sorted((data / "train").iterdir())
    for image in images:
        _bomb(image)
    o = run_cli(train_args(data, tmp_path / "run", "--no-val", *sets(f"data.num_workers={workers}")), capsys)
    assert_one_line_error(o, "instances_train.json", f"none of the {len(images)} images", "decompression bomb")
    assert not (tmp_path / "run" / "model.safetensors").exists()


# -------------------------------------------------------------------------------------------- a full disk
# A checkpoint that cannot be written stops training in one line naming the file and what is kept. The failure
# is simulated in the two writers a checkpoint goes through: safetensors' (which raises its own error or a
# RuntimeError, never an OSError) and torch.save's (the training state).
def _failing(real, error: BaseException, when: str):
    """``real`` (a writer called as ``real(obj, path, ...)``), raising ``error`` for paths containing ``when``."""

    def write(*args, **kwargs):
        if when in str(args[1]):
            raise error
        return real(*args, **kwargs)

    return write


@pytest.mark.parametrize("writer,error", [
    ("save_file", RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                               "message: \"No space left on device\" })")),
    ("save_file", OSError(errno.ENOSPC, "No space left on device")),
    ("torch.save", RuntimeError("PytorchStreamWriter failed writing file data/3: file write failed")),
    ("torch.save", OSError(errno.ENOSPC, "No space left on device")),
], ids=["safetensors-runtime-error", "safetensors-enospc", "torch-save-runtime-error", "torch-save-enospc"])
def test_a_failed_checkpoint_write_is_one_line_and_keeps_the_earlier_ones(synth_dir, tmp_path, capsys, monkeypatch,
                                                                          writer, error):
    run = tmp_path / "run"
    if writer == "save_file":
        monkeypatch.setattr(ck, "save_file", _failing(ck.save_file, error, "iter_0000002"))
    else:
        monkeypatch.setattr(torch, "save", _failing(torch.save, error, "iter_0000002"))
    kept: dict[str, str] = {}

    real_prune = ck.prune

    def prune_and_remember(run_dir, *args, **kwargs):  # what iteration 1 left, before iteration 2 tries to save
        real_prune(run_dir, *args, **kwargs)
        kept.clear()
        kept.update(snapshot(Path(run_dir) / "checkpoints"))

    monkeypatch.setattr(ck, "prune", prune_and_remember)
    args = train_args(synth_dir, run, "--no-val", *sets("train.checkpoint_every=1"))
    args[args.index("--iters") + 1] = "3"
    o = run_cli(args, capsys)
    line = assert_one_line_error(o, "iter_0000002", "cannot write", "iter_0000001")
    assert "No space left" in line or "failed writing" in line
    assert {k: v for k, v in snapshot(run / "checkpoints").items() if "iter_0000001" in k} == kept
    assert [i for i, _, _ in ck.checkpoint_paths(run)] == [1]


def test_a_failed_final_model_write_names_the_checkpoints_kept(synth_dir, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    monkeypatch.setattr(ck, "save_file", _failing(ck.save_file, RuntimeError("Error while serializing: IoError"),
                                                  "model.safetensors"))
    o = run_cli(train_args(synth_dir, run, "--no-val", *sets()), capsys)
    assert_one_line_error(o, "model.safetensors", "cannot write", "iter_0000001")
    assert not (run / "model.safetensors").exists() and [i for i, _, _ in ck.checkpoint_paths(run)] == [1]


# ----------------------------------------------------------------------------------------------- progress
def test_without_a_terminal_training_prints_plain_progress_lines(synth_dir, tmp_path, capsys):
    args = [a for a in train_args(synth_dir, tmp_path / "run", "--no-val", *sets()) if a != "--no-progress"]
    args[args.index("--iters") + 1] = "4"  # a line every train.log_every=2 iterations
    o = run_cli(args, capsys)  # captured stderr is not a terminal: no tqdm bar
    assert o.code == 0, o.err
    lines = [line for line in o.out.splitlines() if line.startswith("train ")]
    # a line once the first iteration is done (the log lines may be far off), then every log_every iterations
    assert [line.split()[1] for line in lines] == ["1/4:", "2/4", "4/4"] and "loss" in lines[1] and "\r" not in o.err
    assert lines[0].startswith("train 1/4: first iteration done in")
