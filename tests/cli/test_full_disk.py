"""A checkpoint that cannot be written (a full disk, a lost mount) stops training in one line naming the file and
what is kept; the checkpoints written before stay byte-identical. The failure is simulated in the two writers
a checkpoint goes through: safetensors' (which raises its own error or a RuntimeError, never an OSError) and
torch.save's (the training state)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch

from cli_corpus import assert_one_line_error, run_cli, sets, snapshot, train_args

import matchdetr.engine.checkpoint as ck


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
