"""No command writes over one of its own inputs: every output option of every subcommand is checked against every
input option before any work (``cli/paths.py`` declares the options, ``io/out_paths.refuse_overwrites`` checks).

The walk takes the subcommands from the argparse tree, so a new command or option is covered as soon as it is
declared; a path option that is declared neither way fails ``test_every_path_option_is_declared``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from cli_corpus import assert_one_line_error, run_cli, snapshot, trained_run  # noqa: F401

from matchdetr.cli import build_parser
from matchdetr.cli.paths import PathArg, display_name, leaf_parsers
from matchdetr.io.out_paths import PathRole

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


# -------------------------------------------------------------------------------- the two reported cases
def test_export_onto_its_own_checkpoint_is_refused(trained_run, tmp_path, capsys):
    ck = Path(shutil.copy(trained_run / "model.safetensors", tmp_path / "m.safetensors"))
    before = snapshot(ck)
    o = run_cli(["export", "--checkpoint", ck, "--out", ck], capsys)
    assert_one_line_error(o, "--out", "--checkpoint", "m.safetensors")
    assert snapshot(ck) == before


def test_export_onto_the_weights_of_the_run_it_reads_is_refused(trained_run, tmp_path, capsys):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    before = snapshot(run)
    o = run_cli(["export", "--checkpoint", run, "--out", run / "model.safetensors"], capsys)
    assert_one_line_error(o, "--out", "--checkpoint", "would write over")
    assert snapshot(run) == before


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


def test_eval_may_rescore_the_results_file_in_its_own_out_folder(synth_dir, tmp_path, capsys):
    out = tmp_path / "e"
    out.mkdir()
    preds = out / "results.json"  # what `eval --checkpoint --out e` wrote; `--predictions` writes no results.json
    preds.write_text("[]")
    before = snapshot(preds)
    o = run_cli(["eval", "--predictions", preds, "--data", synth_dir, "--out", out], capsys)
    assert o.code == 0, o.err
    assert (out / "metrics.json").is_file() and snapshot(preds) == before


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
