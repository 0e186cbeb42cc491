"""Bad-input corpus, part 2: nonsense values, the one error policy, and the smaller items (file modes,
refusal messages, "did you mean", preset aliases, `matchdetr models` speed, help texts, progress lines).

Each case builds its input from nothing under tmp_path and asserts one ``matchdetr: error:`` line with exit
code 2 (no traceback), or a warning and the correct result. Part 1 is test_bad_input_corpus.py.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cli_corpus import (assert_one_line_error, copy_dataset, run_cli, sets, snapshot, train_args,  # noqa: F401
                        trained_run, yolo_copy)

from matchdetr.cli import build_parser, main


# ------------------------------------------------------------------------------------- nonsense values
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


@pytest.mark.parametrize("value", ["2", "-1", "nan", "inf", "high"])
def test_predict_threshold_must_be_a_probability(trained_run, tmp_path, capsys, value):
    o = run_cli(["predict", tmp_path, "--checkpoint", trained_run, "--threshold", value], capsys)
    assert_one_line_error(o, "--threshold must be in [0, 1]", repr(value))


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


def test_warmup_longer_than_the_run_warns_and_trains(synth_dir, tmp_path, capsys):
    o = run_cli(train_args(synth_dir, tmp_path / "run", "--no-val", *sets("train.warmup_iters=50")), capsys)
    assert o.code == 0 and o.warned("train.warmup_iters=50 is longer than the run (1 iterations)")


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


def test_unknown_set_key_suggests_the_right_one(synth_dir, tmp_path, capsys):
    o = run_cli(train_args(synth_dir, tmp_path / "run", *sets("train.keeplast=1")), capsys)
    assert_one_line_error(o, "unknown config key 'train.keeplast'", "did you mean 'train.keep_last'")


@pytest.mark.parametrize("args,needle", [
    (["synth", "OUT", "--train", "-1"], "--train must be an integer >= 0"),
    (["synth", "OUT", "--min-side", "8"], "--min-side must be an integer >= 32"),
    (["eval", "--predictions", "r.json", "--batch-size", "0"], "--batch-size must be an integer >= 1"),
    (["predict", "x.jpg", "--model", "m.onnx", "--every", "0"], "--every must be an integer >= 1"),
    (["export", "--checkpoint", "c", "--out", "m.onnx", "--topk", "-1"], "--topk must be an integer >= 0"),
    (["analyze", "errors", "--checkpoint", "c", "--data", "d", "--iou", "0"], "--iou must be in (0, 1]"),
    (["models", "--num-classes", "0"], "--num-classes must be an integer >= 1"),
    (["bench", "speed", "--model", "detr-tiny", "--repeats", "0"], "--repeats must be an integer >= 1"),
])
def test_other_numeric_options(capsys, args, needle):
    assert_one_line_error(run_cli(args, capsys), needle)


# -------------------------------------------------------------------------------------- one error policy
def test_dataset_error_inside_a_dataloader_worker_is_one_line(synth_dir, tmp_path, capsys):
    data = copy_dataset(synth_dir, tmp_path / "data")
    for image in (data / "train").iterdir():
        image.write_bytes(b"junk")
    args = train_args(data, tmp_path / "run", "--no-val", *sets("data.num_workers=2"))
    assert_one_line_error(run_cli(args, capsys), "no readable image")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda(synth_dir, tmp_path, capsys):
    args = train_args(synth_dir, tmp_path / "run", *sets())
    args[args.index("--device") + 1] = "cuda"
    assert_one_line_error(run_cli(args, capsys), "--device cuda", "CUDA is not available")


def test_device_that_is_not_a_device(synth_dir, trained_run, capsys):
    o = run_cli(["eval", "--checkpoint", trained_run, "--data", synth_dir, "--device", "gpu0"], capsys)
    assert_one_line_error(o, "--device 'gpu0'", "expected auto, cpu, cuda, cuda:N or mps")


def test_export_opset_out_of_range(trained_run, tmp_path, capsys):
    o = run_cli(["export", "--checkpoint", trained_run, "--out", tmp_path / "m.onnx", "--opset", "99"], capsys)
    assert_one_line_error(o, "--opset 99", "between 16")
    assert not (tmp_path / "m.onnx").exists()


def _a_file(tmp_path: Path) -> Path:
    f = tmp_path / "taken"
    f.write_text("precious")
    return f


@pytest.mark.parametrize("command", ["train", "eval", "predict", "synth", "export", "report"])
def test_out_that_is_a_file(synth_dir, trained_run, tmp_path, capsys, command):
    f = _a_file(tmp_path)
    before = snapshot(f)
    args = {"train": train_args(synth_dir, f, *sets()),
            "eval": ["eval", "--checkpoint", trained_run, "--data", synth_dir, "--out", f],
            "predict": ["predict", synth_dir / "val", "--checkpoint", trained_run, "--out", f],
            "synth": ["synth", f, "--train", "1", "--val", "1"],
            "export": ["export", "--checkpoint", trained_run, "--out", tmp_path],
            "report": ["report", f]}[command]
    assert_one_line_error(run_cli(args, capsys), str(tmp_path))
    assert snapshot(f) == before


@pytest.mark.parametrize("command", ["train", "eval", "predict", "export", "synth"])
def test_out_below_a_file_cannot_be_written(synth_dir, trained_run, tmp_path, capsys, command):
    bad = _a_file(tmp_path) / "sub"
    args = {"train": train_args(synth_dir, bad, *sets()), "synth": ["synth", bad, "--train", "1", "--val", "1"],
            "eval": ["eval", "--checkpoint", trained_run, "--data", synth_dir, "--out", bad],
            "predict": ["predict", synth_dir / "val", "--checkpoint", trained_run, "--out", bad],
            "export": ["export", "--checkpoint", trained_run, "--out", bad / "m.onnx"]}[command]
    assert_one_line_error(run_cli(args, capsys), "cannot write there")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_out_in_a_read_only_folder(synth_dir, trained_run, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        o = run_cli(["eval", "--checkpoint", trained_run, "--data", synth_dir, "--out", ro / "e"], capsys)
        assert_one_line_error(o, "cannot write there")
    finally:
        ro.chmod(0o755)


def test_broken_pipe_is_quiet(cli_env):
    proc = subprocess.Popen([sys.executable, "-m", "matchdetr", "models", "--no-params"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=cli_env)
    proc.stdout.close()  # the reader is gone before the first line: what `| head -0` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 128 + 13 and err == ""  # 128 + SIGPIPE, no "Exception ignored" noise


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["models", "--no-params"]])
def test_a_reader_gone_before_the_first_line_is_quiet_without_unbuffered_output(cli_env, args):
    env = {k: v for k, v in cli_env.items() if k != "PYTHONUNBUFFERED"}  # what a user's shell has: block-buffered
    proc = subprocess.Popen([sys.executable, "-m", "matchdetr", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 128 + 13 and err == "", err  # not 120 with "Exception ignored ... BrokenPipe"


def test_no_standard_output_at_all_is_not_a_traceback(cli_env, tmp_path):
    # `matchdetr synth DIR >&-`: Python starts with sys.stdout None; the work is done, the summary has nowhere to go
    proc = subprocess.run([sys.executable, "-m", "matchdetr", "synth", str(tmp_path / "s"), "--train", "1", "--val",
                           "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=cli_env,
                          preexec_fn=lambda: os.close(1), timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert (tmp_path / "s" / "annotations" / "instances_train.json").is_file()


def test_a_reader_gone_in_the_middle_of_a_long_table_is_quiet(monkeypatch, capfd):
    from matchdetr.cli.errors import run_command

    read_end, write_end = os.pipe()
    monkeypatch.setattr(sys, "stdout", os.fdopen(write_end, "w"))

    def table(_args) -> int:
        print("header", flush=True)
        os.read(read_end, 64)  # `head -1` read its line ...
        os.close(read_end)  # ... and went away; the rows below no longer fit anywhere
        for i in range(100_000):
            print(f"row {i:6d} " + "x" * 60)
        return 0

    assert run_command(table, argparse.Namespace()) == 128 + 13
    assert "Traceback" not in capfd.readouterr().err


def test_debug_shows_the_traceback(cli_env):
    run = lambda env: subprocess.run([sys.executable, "-m", "matchdetr", "models", "--presets", "nope"],  # noqa: E731
                                     capture_output=True, text=True, env=env, timeout=60)
    quiet, loud = run(cli_env), run({**cli_env, "MATCHDETR_DEBUG": "1"})
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr and "unknown preset 'nope'" in quiet.stderr
    assert "Traceback" in loud.stderr and "ConfigError" in loud.stderr


# -------------------------------------------------------------------------------------------- smaller
def test_outputs_follow_the_umask(synth_dir, tmp_path, capsys):
    old = os.umask(0o027)
    try:
        o = run_cli(train_args(synth_dir, tmp_path / "run", *sets()), capsys)
    finally:
        os.umask(old)
    assert o.code == 0, o.err
    for name in ("model.safetensors", "results.csv", "metrics.jsonl", "eval/metrics.json", "checkpoints/iter_0000001.safetensors"):
        assert stat.S_IMODE((tmp_path / "run" / name).stat().st_mode) == 0o640, name


def _crafted_pickle(path: Path) -> Path:
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {path.parent / 'ran'}",))

    torch.save({"model": Payload()}, path)
    return path


@pytest.mark.parametrize("where", ["backbone", "convert"])
def test_pickle_refusal_is_a_full_sentence(synth_dir, tmp_path, capsys, where):
    evil = _crafted_pickle(tmp_path / "evil.pth")
    args = {"backbone": train_args(synth_dir, tmp_path / "run", *sets(f"model.backbone.weights={evil}")),
            "convert": ["convert", "official", "--family", "dino", evil, tmp_path / "o.safetensors"]}[where]
    line = assert_one_line_error(run_cli(args, capsys), "refused by torch.load(weights_only=True)", "posix.system",
                                 "never unpickles")
    assert "Re-running" not in line and "weights_only` set to `False" not in line
    assert not (tmp_path / "ran").exists()


def test_a_pth_given_to_eval_points_to_convert(synth_dir, tmp_path, capsys):
    pth = tmp_path / "release.pth"
    torch.save({"model": {"w": torch.zeros(1)}}, pth)
    o = run_cli(["eval", "--checkpoint", pth, "--data", synth_dir], capsys)
    assert_one_line_error(o, "release.pth", "matchdetr convert official")


def test_old_preset_names_resolve_to_the_new_ones(capsys):
    from matchdetr import presets

    for old, new in presets.ALIASES.items():
        assert presets.get(old).preset == new and new in presets.names() and old not in presets.names()
    o = run_cli(["models", "--presets", "sam-detr-r50-dc5,deformable-detr-r50-refine"], capsys)
    assert o.code == 0 and "sam-detr-dc5-r50" in o.out and "deformable-detr-refine-r50" in o.out
    assert all(n.endswith(("-r50", "-swin-t", "-swin-l", "-tiny")) for n in presets.names())  # the backbone last


def test_models_prints_in_under_two_seconds(cli_env):
    from matchdetr import presets
    from matchdetr.analysis.param_count import count_parameters, parameter_counts

    parameter_counts()  # fills this session's cache (MATCHDETR_CACHE, set in conftest)
    start = time.time()
    code = "import sys; from matchdetr.cli import main; rc = main(['models']); assert 'torch' not in sys.modules; sys.exit(rc)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env, timeout=60)
    assert done.returncode == 0 and time.time() - start < 2.0, (time.time() - start, done.stderr)
    real = matchdetr_build_count("deformable-detr-tiny")
    assert count_parameters("deformable-detr-tiny", 91) == real  # the meta-device count is the real one
    assert f"{real[0] / 1e6:7.2f}M" in next(l for l in done.stdout.splitlines() if l.startswith("deformable-detr-tiny "))
    listed = [line.split()[0] for line in done.stdout.splitlines()[2:-2]]
    assert listed == presets.names()


def matchdetr_build_count(name: str) -> tuple[int, int]:
    import matchdetr

    model = matchdetr.build(name, num_classes=91)
    return sum(p.numel() for p in model.parameters()), sum(p.numel() for p in model.parameters() if p.requires_grad)


def _options(parser: argparse.ArgumentParser, prog: str = "matchdetr"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{prog} {name}")
        elif action.option_strings and action.dest != "help":
            yield prog, action


def test_every_option_has_help_and_shows_its_default():
    missing = [f"{prog} {a.option_strings[0]}" for prog, a in _options(build_parser()) if not (a.help or "").strip()]
    assert not missing, missing
    help_text = build_parser()._subparsers._group_actions[0].choices["eval"].format_help()
    assert "--batch-size BATCH_SIZE" in help_text and "(default: 8)" in help_text


def _parsers(parser: argparse.ArgumentParser, prog: str = "matchdetr"):
    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{prog} {name}")


def test_every_command_has_a_description_and_every_default_is_shown():
    for prog, parser in _parsers(build_parser()):
        assert (parser.description or "").strip(), f"{prog}: no description"
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if not action.option_strings or action.dest == "help" or action.default in (None, False, [], argparse.SUPPRESS):
                continue
            entry = " ".join((parser._get_formatter()._format_action(action)).split())
            assert "default" in entry.lower(), f"{prog} {action.option_strings[0]}: default {action.default!r} not shown"
        for stale in ("COCO layout", "COCO-format dataset", "COCO bbox evaluation"):  # they read YOLO and VOC too
            assert stale not in text, f"{prog}: {stale!r}"


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


def test_exist_ok_and_resume_are_documented_in_train_help():
    text = " ".join(build_parser()._subparsers._group_actions[0].choices["train"].format_help().split())
    assert "--exist-ok" in text and "deleted first" in text and "--resume" in text


def test_without_a_terminal_training_prints_plain_progress_lines(synth_dir, tmp_path, capsys):
    args = [a for a in train_args(synth_dir, tmp_path / "run", "--no-val", *sets()) if a != "--no-progress"]
    args[args.index("--iters") + 1] = "4"  # a line every train.log_every=2 iterations
    o = run_cli(args, capsys)  # captured stderr is not a terminal: no tqdm bar
    assert o.code == 0, o.err
    lines = [line for line in o.out.splitlines() if line.startswith("train ")]
    # a line once the first iteration is done (the log lines may be far off), then every log_every iterations
    assert [line.split()[1] for line in lines] == ["1/4:", "2/4", "4/4"] and "loss" in lines[1] and "\r" not in o.err
    assert lines[0].startswith("train 1/4: first iteration done in")
