"""Helpers of the misuse corpus: run the CLI in-process and read what it said, check the one-line error contract,
fingerprint folders to prove nothing was touched (the shared inputs, a trained run and its copies, are in conftest)."""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from conftest import MICRO

from matchdetr.cli import main

# The micro model of the other CLI tests, without backbone pretraining and DataLoader workers (speed).
MICRO_SETS = MICRO + ["data.num_workers=0"]


def sets(*extra: str) -> list[str]:
    """``--set`` arguments for the micro model plus ``extra`` overrides."""
    return [x for o in MICRO_SETS + list(extra) for x in ("--set", o)]


def train_args(data: Path, out: Path, *more: str, model: str = "detr-tiny") -> list[str]:
    """A micro training command (1 iteration, batch 2, CPU, no bar) into ``out``."""
    return ["train", "--model", model, "--data", str(data), "--out", str(out), "--iters", "1", "--batch-size", "2",
            "--device", "cpu", "--no-progress", *more]


@dataclass
class Outcome:
    code: int
    out: str
    err: str
    warnings: list[str] = field(default_factory=list)

    def warned(self, *needles: str) -> bool:
        """Some warning contains every needle."""
        return any(all(n in w for n in needles) for w in self.warnings)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> Outcome:
    """``matchdetr ARGS`` in this process: exit code, stdout, stderr and the warnings it raised (pytest records
    warnings instead of letting them reach stderr, so they are collected here)."""
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit_:  # --help; everything else returns its code
            code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err, [str(w.message) for w in caught])


def assert_one_line_error(o: Outcome, *needles: str, code: int = 2) -> str:
    """Exit ``code``, exactly one ``matchdetr: error:`` line on stderr containing every needle, no traceback."""
    lines = [line for line in o.err.splitlines() if line.startswith("matchdetr: error:")]
    assert o.code == code, (o.code, o.err[-2000:])
    assert len(lines) == 1, o.err[-2000:]
    assert "Traceback" not in o.err, o.err[-2000:]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def snapshot(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root`` (``root`` itself when it is a file)."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root.parent if root.is_file() else root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files}


def copy_dataset(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_splits(data: Path, edit: Callable[[dict], None], splits: tuple[str, ...] = ("train", "val")) -> Path:
    """``edit`` (a function changing a COCO dict in place) applied to the annotation files of ``splits`` of the
    COCO dataset ``data`` (a copy)."""
    for split in splits:
        ann = data / "annotations" / f"instances_{split}.json"
        gt = json.loads(ann.read_text())
        edit(gt)
        ann.write_text(json.dumps(gt))
    return data


def box_only(gt: dict) -> None:
    """For :func:`edit_splits`: boxes without their segmentations."""
    for a in gt["annotations"]:
        a.pop("segmentation", None)


def first_classes(n: int) -> Callable[[dict], None]:
    """For :func:`edit_splits`: the first ``n`` categories and their annotations only."""
    def edit(gt: dict) -> None:
        keep = {c["id"] for c in gt["categories"][:n]}
        gt["categories"] = [c for c in gt["categories"] if c["id"] in keep]
        gt["annotations"] = [a for a in gt["annotations"] if a["category_id"] in keep]
    return edit


def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    """A copy of the session's trained run that a test may write into."""
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def truncate(path: Path, keep: int = 300) -> None:
    """Cut an image file short: a decoder sees a valid header, then the data ends."""
    path.write_bytes(path.read_bytes()[:keep])


def canonical_results(results_json: Path, gt: Path | dict) -> list[tuple]:
    """Detections as ``(file name, class name, bbox, score)``: comparable across layouts whose ids differ."""
    gt = json.loads(Path(gt).read_text()) if not isinstance(gt, dict) else gt
    names = {c["id"]: c["name"] for c in gt["categories"]}
    files = {i["id"]: Path(i["file_name"]).name for i in gt["images"]}
    return sorted((files[d["image_id"]], names[d["category_id"]], tuple(d["bbox"]), d["score"])
                  for d in json.loads(results_json.read_text()))
