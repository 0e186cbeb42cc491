"""`export` misused: an opset out of range, an output onto the checkpoint it reads."""

from __future__ import annotations

import shutil
from pathlib import Path

from .corpus import assert_one_line_error, run_cli, snapshot


# ---------------------------------------------------------------------------------------- nonsense values
def test_export_opset_out_of_range(trained_run, tmp_path, capsys):
    o = run_cli(["export", "--checkpoint", trained_run, "--out", tmp_path / "m.onnx", "--opset", "99"], capsys)
    assert_one_line_error(o, "--opset 99", "between 16")
    assert not (tmp_path / "m.onnx").exists()


# ------------------------------------------------------------------------------------- outputs and inputs
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
