"""engine/run_dir.py: which files a run owns, and what resume / exist_ok do with a folder (no training here;
the CLI cases are in tests/cli/misuse/test_train.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from matchdetr.engine.run_dir import RunDirError, prepare_run_dir, run_files


def _old_run(root: Path, checkpoint: bool) -> Path:
    (root / "checkpoints").mkdir(parents=True)
    (root / "eval" / "iter_0000010").mkdir(parents=True)
    for name in ("config.json", "metrics.jsonl", "results.csv", "eval/metrics.json", "eval/iter_0000010/results.json",
                 "checkpoints/.iter_0000020.safetensors.abc123.tmp", "notes.md", "checkpoints/keep.txt"):
        (root / name).write_text("x")
    if checkpoint:
        (root / "checkpoints" / "iter_0000010.safetensors").write_text("x")
        (root / "checkpoints" / "iter_0000010.state.pt").write_text("x")
    return root


def test_run_files_are_exactly_what_runs_write(tmp_path):
    root = _old_run(tmp_path / "run", checkpoint=True)
    found = sorted(str(p.relative_to(root)) for p in run_files(root))
    assert found == sorted(["config.json", "metrics.jsonl", "results.csv", "eval", "checkpoints/iter_0000010.safetensors",
                            "checkpoints/iter_0000010.state.pt", "checkpoints/.iter_0000020.safetensors.abc123.tmp"])


@pytest.mark.parametrize("resume", [False, True])
def test_another_run_is_refused_without_exist_ok(tmp_path, resume):
    root = _old_run(tmp_path / "run", checkpoint=False)
    with pytest.raises(RunDirError, match="--exist-ok") as err:
        prepare_run_dir(root, resume=resume, exist_ok=False, has_checkpoint=False)
    assert "\n" not in str(err.value) and "config.json" in str(err.value)
    assert (root / "config.json").exists()


def test_exist_ok_deletes_the_run_files_only(tmp_path):
    root = _old_run(tmp_path / "run", checkpoint=True)
    prepare_run_dir(root, resume=False, exist_ok=True, has_checkpoint=True)
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    assert left == ["checkpoints", "checkpoints/keep.txt", "notes.md"]


def test_resume_and_exist_ok_continue_a_checkpoint_or_start_over(tmp_path):
    """What `matchdetr demo` and `bench convergence` pass: their folders are their own."""
    with_ck = _old_run(tmp_path / "a", checkpoint=True)
    prepare_run_dir(with_ck, resume=True, exist_ok=True, has_checkpoint=True)
    assert (with_ck / "metrics.jsonl").exists() and (with_ck / "checkpoints" / "iter_0000010.safetensors").exists()
    without = _old_run(tmp_path / "b", checkpoint=False)
    prepare_run_dir(without, resume=True, exist_ok=True, has_checkpoint=False)
    assert not run_files(without) and (without / "notes.md").exists()


def test_a_missing_or_unrelated_folder_is_fine(tmp_path):
    assert prepare_run_dir(tmp_path / "new" / "run", resume=False, exist_ok=False, has_checkpoint=False).is_dir()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "photo.jpg").write_text("x")
    prepare_run_dir(tmp_path / "mine", resume=False, exist_ok=False, has_checkpoint=False)
    assert (tmp_path / "mine" / "photo.jpg").exists()
