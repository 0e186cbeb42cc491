"""What holds for every command: one-line errors and exit codes, outputs never on inputs, quiet pipes, help texts."""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .corpus import assert_one_line_error, run_cli, sets, snapshot, train_args

from matchdetr.cli import build_parser
from matchdetr.cli.paths import PathArg, display_name, leaf_parsers
from matchdetr.io.out_paths import PathRole


# --------------------------------------------------------------------------------------- one error policy
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


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda(synth_dir, tmp_path, capsys):
    args = train_args(synth_dir, tmp_path / "run", *sets())
    args[args.index("--device") + 1] = "cuda"
    assert_one_line_error(run_cli(args, capsys), "--device cuda", "CUDA is not available")


def test_device_that_is_not_a_device(synth_dir, trained_run, capsys):
    o = run_cli(["eval", "--checkpoint", trained_run, "--data", synth_dir, "--device", "gpu0"], capsys)
    assert_one_line_error(o, "--device 'gpu0'", "expected auto, cpu, cuda, cuda:N or mps")


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


def test_debug_shows_the_traceback(cli_env):
    run = lambda env: subprocess.run([sys.executable, "-m", "matchdetr", "models", "--presets", "nope"],  # noqa: E731
                                     capture_output=True, text=True, env=env, timeout=60)
    quiet, loud = run(cli_env), run({**cli_env, "MATCHDETR_DEBUG": "1"})
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr and "unknown preset 'nope'" in quiet.stderr
    assert "Traceback" in loud.stderr and "ConfigError" in loud.stderr


# ----------------------------------------------------------------------------------------- output folders
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


def test_outputs_follow_the_umask(synth_dir, tmp_path, capsys):
    old = os.umask(0o027)
    try:
        o = run_cli(train_args(synth_dir, tmp_path / "run", *sets()), capsys)
    finally:
        os.umask(old)
    assert o.code == 0, o.err
    for name in ("model.safetensors", "results.csv", "metrics.jsonl", "eval/metrics.json", "checkpoints/iter_0000001.safetensors"):
        assert stat.S_IMODE((tmp_path / "run" / name).stat().st_mode) == 0o640, name


# ------------------------------------------------------------------------- outputs never overwrite inputs
# Every output option of every subcommand is checked against every input option before any work (cli/paths.py
# declares the options, io/out_paths.refuse_overwrites checks). The walk takes the subcommands from the argparse
# tree, so a new command or option is covered as soon as it is declared; a path option declared neither way
# fails test_every_path_option_is_declared.
_OUTPUTS = (PathRole.OUTPUT_FILE, PathRole.OUTPUT_DIR)


# Options of the `train` command, whose parser is being rewritten elsewhere: declared there, not here.
# Options whose help mentions files or checkpoints without being a path.
_NOT_PATHS = {("train", "--model"), ("convert", "official", "--set")}


def _path_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if isinstance(a.type, PathArg)]


def _pairs(roles: tuple[PathRole, ...] = _OUTPUTS) -> list[tuple[tuple[str, ...], str, str]]:
    """``(command, input option, output option)`` for every subcommand of the parser (outputs of ``roles``)."""
    found = []
    for command, parser in leaf_parsers(build_parser()):
        actions = _path_actions(parser)
        for out in (a for a in actions if a.type.role in roles):
            for inp in (a for a in actions if a.type.role not in _OUTPUTS and a is not out):
                found.append((command, display_name(inp), display_name(out)))
    return found


def _argv(command: tuple[str, ...], values: dict[str, str], tmp: Path) -> list[str] | None:
    """A command line of ``command`` giving ``values`` (display name -> value) and a filler for every other
    required argument; None when two of ``values`` exclude each other."""
    parser = dict(leaf_parsers(build_parser()))[command]
    given = {a for a in parser._actions if display_name(a) in values}
    for group in parser._mutually_exclusive_groups:
        if len(given & set(group._group_actions)) > 1:
            return None
    needed = [a for a in parser._actions if a.required and a.option_strings] + [
        g._group_actions[0] for g in parser._mutually_exclusive_groups
        if g.required and not given & set(g._group_actions)]
    options: list[str] = []
    positionals: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = display_name(action)
        if name in values:
            value = values[name]
        elif not action.option_strings or action in needed:
            value = action.choices[0] if action.choices else str(tmp / f"filler_{action.dest}")
            if action.choices and not isinstance(action.choices, list):
                value = next(iter(action.choices))
        else:
            continue
        if action.option_strings:
            options += [action.option_strings[0], value]
        else:
            positionals.append(value)
    return [*command, *positionals, *options]


@pytest.mark.parametrize("command,inp,out", _pairs(), ids=lambda v: " ".join(v) if isinstance(v, tuple) else v)
def test_every_output_option_is_checked_against_every_input_option(command, inp, out, tmp_path, capsys):
    role = next(a.type.role for a in _path_actions(dict(leaf_parsers(build_parser()))[command])
                if display_name(a) == out)
    shared = tmp_path / "shared"
    if role is PathRole.OUTPUT_DIR:  # an output folder that is an input folder
        shared.mkdir()
        (shared / "keep.txt").write_text("mine")
    else:
        shared.write_text("mine")
    argv = _argv(command, {inp: str(shared), out: str(shared)}, tmp_path)
    if argv is None:
        pytest.skip(f"{inp} and {out} exclude each other")
    before = snapshot(shared)
    o = run_cli(argv, capsys)
    assert_one_line_error(o, out, inp, str(shared))
    assert snapshot(shared) == before


@pytest.mark.parametrize("command,inp,out", _pairs((PathRole.OUTPUT_FILE,)),
                         ids=lambda v: " ".join(v) if isinstance(v, tuple) else v)
def test_an_output_file_on_a_file_an_input_folder_reads_is_refused(command, inp, out, tmp_path, capsys):
    types = {display_name(a): a.type for a in _path_actions(dict(leaf_parsers(build_parser()))[command])}
    folder = tmp_path / "input"
    folder.mkdir()
    victim = folder / types[inp].example_name()
    victim.parent.mkdir(parents=True, exist_ok=True)
    victim.write_text("mine")
    argv = _argv(command, {inp: str(folder), out: str(victim)}, tmp_path)
    if argv is None:
        pytest.skip(f"{inp} and {out} exclude each other")
    before = snapshot(folder)
    assert_one_line_error(run_cli(argv, capsys), out, inp, "would write over")
    assert snapshot(folder) == before


def _written_pairs() -> list[tuple[tuple[str, ...], str, str, str]]:
    """``(command, input option, output folder option, a file the folder receives)``."""
    return [(c, i, o, name) for c, i, o in _pairs((PathRole.OUTPUT_DIR,))
            for a in _path_actions(dict(leaf_parsers(build_parser()))[c]) if display_name(a) == o
            for name in a.type.writes[:1]]


@pytest.mark.parametrize("command,inp,out,name", _written_pairs(),
                         ids=lambda v: " ".join(v) if isinstance(v, tuple) else v)
def test_a_file_an_output_folder_receives_may_not_be_an_input(command, inp, out, name, tmp_path, capsys):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / name).write_text("mine")
    argv = _argv(command, {inp: str(folder / name), out: str(folder)}, tmp_path)
    if argv is None:
        pytest.skip(f"{inp} and {out} exclude each other")
    before = snapshot(folder)
    assert_one_line_error(run_cli(argv, capsys), out, inp, name)
    assert snapshot(folder) == before


def test_every_path_option_is_declared():
    """An option whose help speaks of files, folders or checkpoints is a path: declared, or listed above."""
    words = ("file", "folder", "directory", "checkpoint", "json", "written", "where")
    undeclared, missed = [], []
    for command, parser in leaf_parsers(build_parser()):
        for a in parser._actions:
            looks_like_a_path = any(w in (a.help or "").lower() for w in words)
            if isinstance(a.type, PathArg):
                missed += [] if looks_like_a_path else [(*command, display_name(a))]  # the words must find it
            elif looks_like_a_path and a.nargs != 0 and not a.choices and a.type in (None, str):
                key = (*command, display_name(a))
                if key not in _NOT_PATHS:
                    undeclared.append(" ".join(key))
    assert not undeclared, f"path options declared neither as input nor as output (cli/paths.py): {undeclared}"
    assert not missed, f"the words above would not find these path options: {missed}"


def test_the_walk_covers_the_commands_that_write():
    commands = {c[0] for c, _, _ in _pairs()}
    assert {"eval", "predict", "export", "convert", "analyze", "bench", "demo"} <= commands


# -------------------------------------------------------------------------------------------------- pipes
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


# --------------------------------------------------------------------------------------------- help texts
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
