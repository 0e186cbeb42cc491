"""Interruption and exact resume (issue #9 items 2-4).

- a failing write (full disk) leaves the previous checkpoint intact and is one line;
- ``--resume`` takes the newest complete checkpoint and skips partial or damaged ones;
- SIGTERM / SIGINT save a checkpoint and exit cleanly; the resumed run ends bit-identical to an uninterrupted one;
- SIGKILL in the middle of a checkpoint write loses nothing but the unfinished iterations.

The random SIGKILL loop is in the ``slow`` group: ``make test-slow`` or
``.venv/bin/python -m pytest -q -m slow tests/engine/test_interrupt_resume.py``.
"""

from __future__ import annotations

import errno
import os
import random
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import MICRO

from matchdetr.engine import checkpoint as ck

ITERS = 24
HELPER = Path(__file__).with_name("fault_injection.py")


def env(**extra: str) -> dict[str, str]:
    e = dict(os.environ, PYTHONUNBUFFERED="1", **extra)
    e.setdefault("OMP_NUM_THREADS", "1")
    return e


def train_cmd(synth_dir: Path, out: Path, every: int = 4, helper: bool = False) -> list[str]:
    sets = MICRO + [f"train.checkpoint_every={every}", "data.num_workers=2", "model.transformer.dropout=0.1"]
    head = [sys.executable, str(HELPER)] if helper else [sys.executable, "-m", "matchdetr"]
    cmd = head + ["train", "--model", "detr-tiny", "--data", str(synth_dir), "--out", str(out), "--iters", str(ITERS),
                  "--batch-size", "2", "--seed", "5", "--device", "cpu", "--no-val", "--no-progress"]
    return cmd + sum((["--set", s] for s in sets), [])


def wait_for(condition, timeout: float = 180.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended (code {proc.returncode}) before the condition held")
        if time.time() > deadline:
            raise AssertionError("timed out waiting for the run")
        time.sleep(0.02)


def newest(run: Path) -> int:
    done = ck.checkpoint_paths(run)
    return done[-1][0] if done else -1


def assert_same_weights(a_dir: Path, b_dir: Path) -> None:
    a, b = load_file(str(a_dir / "model.safetensors")), load_file(str(b_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"


def resume(synth_dir: Path, run: Path, every: int = 4) -> None:
    proc = subprocess.run(train_cmd(synth_dir, run, every) + ["--resume"], env=env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def reference(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    subprocess.run(train_cmd(synth_dir, out), check=True, env=env(), capture_output=True, timeout=300)
    return out


# ----------------------------------------------------------------------------------------- atomic writes
def _fake_checkpoint(run: Path, iteration: int) -> None:
    name = ck.checkpoint_name(iteration)
    ck.save_state(run / "checkpoints" / f"{name}.state.pt", {"iteration": iteration, "x": torch.arange(3)})
    ck.save_weights(run / "checkpoints" / f"{name}.safetensors", {"w": torch.full((4,), float(iteration))},
                    {"iteration": iteration})


def test_full_disk_during_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    _fake_checkpoint(tmp_path, 2)
    before = {p.name: p.read_bytes() for p in (tmp_path / "checkpoints").iterdir()}

    def full_disk(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 100)  # part of the file made it to disk, then the disk filled up
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ck, "save_file", full_disk)
    ck.save_state(tmp_path / "checkpoints" / "iter_0000004.state.pt", {"iteration": 4})
    with pytest.raises(ck.CheckpointError, match=r"iter_0000004.safetensors: cannot write checkpoint \(No space left"):
        ck.save_weights(tmp_path / "checkpoints" / "iter_0000004.safetensors", {"w": torch.zeros(4)}, {"iteration": 4})
    after = {p.name: p.read_bytes() for p in (tmp_path / "checkpoints").iterdir()}
    assert {k: after[k] for k in before} == before  # the old checkpoint is byte for byte what it was
    assert set(after) - set(before) == {"iter_0000004.state.pt"}  # no temporary file, no weights file
    assert ck.newest_complete(tmp_path)[0] == 2
    assert torch.equal(ck.load_weights(ck.newest_complete(tmp_path)[1])[0]["w"], torch.full((4,), 2.0))


def test_resume_picks_the_newest_complete_checkpoint(tmp_path):
    for it in (2, 4, 6, 8):
        _fake_checkpoint(tmp_path, it)
    ckdir = tmp_path / "checkpoints"
    (ckdir / "iter_0000008.state.pt").unlink()  # killed between the two files: incomplete, never listed
    weights6 = ckdir / "iter_0000006.safetensors"
    weights6.write_bytes(weights6.read_bytes()[:40])  # damaged after the fact (a copy cut short)
    state4 = ckdir / "iter_0000004.state.pt"
    state4.write_bytes(state4.read_bytes()[:-30])
    (ckdir / ".iter_0000010.safetensors.abc.tmp").write_bytes(b"partial")
    assert [i for i, _, _ in ck.checkpoint_paths(tmp_path)] == [2, 4, 6]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = ck.newest_complete(tmp_path)
    assert found is not None and found[0] == 2
    notes = [str(w.message) for w in caught]
    assert len(notes) == 2 and "iter_0000006.safetensors" in notes[0] and "iter_0000004.state.pt" in notes[1]


def test_prune_keeps_the_last_n_and_clears_debris(tmp_path):
    for it in (2, 4, 6, 8):
        _fake_checkpoint(tmp_path, it)
    ckdir = tmp_path / "checkpoints"
    ck.save_state(ckdir / "iter_0000005.state.pt", {"iteration": 5})  # a save killed between its two files
    ck.save_state(ckdir / "iter_0000009.state.pt", {"iteration": 9})  # ... or one still being written
    (ckdir / ".iter_0000010.safetensors.abc.tmp").write_bytes(b"partial")
    ck.prune(tmp_path, keep_last=2)
    assert sorted(p.name for p in ckdir.iterdir()) == ["iter_0000006.safetensors", "iter_0000006.state.pt",
                                                       "iter_0000008.safetensors", "iter_0000008.state.pt",
                                                       "iter_0000009.state.pt"]


# ------------------------------------------------------------------------------------------ interruption
@pytest.mark.parametrize("sig", [pytest.param(signal.SIGTERM, id="SIGTERM"),
                                 pytest.param(signal.SIGINT, id="SIGINT", marks=pytest.mark.slow)])
def test_signal_saves_a_checkpoint_and_resume_is_bit_identical(synth_dir, reference, tmp_path, sig):
    run = tmp_path / "run"
    proc = subprocess.Popen(train_cmd(synth_dir, run), env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (run / "metrics.jsonl").exists(), proc=proc)  # training is under way (first log at iter 2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err[-2000:]
    last = err.strip().splitlines()[-1]
    m = re.fullmatch(rf"matchdetr: stopped by {sig.name} at iteration (\d+)/{ITERS}; checkpoint (\S+); "
                     r"continue with --resume", last)
    assert m, last
    stopped = int(m.group(1))
    assert 2 <= stopped < ITERS and newest(run) == stopped and Path(m.group(2)).exists()
    assert not (run / "model.safetensors").exists()
    resume(synth_dir, run)
    assert_same_weights(reference, run)


def test_sigkill_during_a_checkpoint_write_then_resume_is_bit_identical(synth_dir, reference, tmp_path):
    run, marker = tmp_path / "run", tmp_path / "in_write"
    proc = subprocess.Popen(train_cmd(synth_dir, run, helper=True), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env(FAULT_HANG_SAVE="8", FAULT_MARKER=str(marker)))
    wait_for(marker.exists, proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert Path(marker.read_text()).exists()  # a half-written weights file lies in checkpoints/
    assert (run / "checkpoints" / "iter_0000008.state.pt").exists()  # its state file was complete
    assert newest(run) == 4  # ... yet the checkpoint does not count: its weights never got their name
    resume(synth_dir, run)
    assert_same_weights(reference, run)
    assert not list((run / "checkpoints").glob(".*.tmp"))  # the debris was cleaned up


@pytest.mark.slow
def test_random_sigkill_loop_is_bit_identical(synth_dir, reference, tmp_path):
    """SIGKILL at random iterations (checkpoints every iteration, so many kills land inside a write), plus one
    kill that is certainly inside a write; resume each time; the final weights equal the uninterrupted run's."""
    run, rng = tmp_path / "run", random.Random(1234)
    kills = 0
    while kills < 6:
        start = newest(run)
        target = min(start + rng.randint(1, 6), ITERS - 1)
        cmd = train_cmd(synth_dir, run, every=1) + (["--resume"] if start >= 0 else [])
        proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: newest(run) >= target, proc=proc)
        time.sleep(rng.uniform(0.0, 0.15))  # vary the phase: mid-step, mid-write, between the two files
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        assert newest(run) < ITERS and not (run / "model.safetensors").exists()
    marker = tmp_path / "in_write"
    hang_at = newest(run) + 1
    cmd = train_cmd(synth_dir, run, every=1, helper=True) + ["--resume"]
    proc = subprocess.Popen(cmd, env=env(FAULT_HANG_SAVE=str(hang_at), FAULT_MARKER=str(marker)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(marker.exists, proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert newest(run) == hang_at - 1
    resume(synth_dir, run, every=1)
    assert_same_weights(reference, run)
