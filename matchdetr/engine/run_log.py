"""What a training run writes as it goes: ``metrics.jsonl`` (one JSON record per log line, evaluation and
unstable score), its ``results.csv`` twin and, optionally, TensorBoard scalars. Main process only."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

from ..io.files import atomic_write_text
from .results_csv import ResultsCsv


class RunLog:
    """Appends records to ``out_dir/metrics.jsonl`` and ``results.csv`` (and TensorBoard when asked); a no-op
    off the main process."""

    def __init__(self, out_dir: Path, tensorboard: bool, main: bool) -> None:
        self.out_dir, self.main = out_dir, main
        self.writer = _tensorboard(out_dir) if tensorboard and main else None
        self._csv: ResultsCsv | None = None  # opened on the first record

    def write(self, record: dict[str, Any]) -> None:
        if not self.main:
            return
        # NaN (e.g. APs of a split without small objects) is written as null: strict JSON for other tools.
        record = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in record.items()}
        with open(self.out_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        # results.csv is built from the jsonl on first use, so a resumed run starts from the lines it kept
        if self._csv is None:
            self._csv = ResultsCsv(self.out_dir / "results.csv", self.out_dir / "metrics.jsonl")
        else:
            self._csv.append(record)
        if self.writer is not None:
            prefix = "train" if record["type"] == "train" else "val"
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("iter", "epoch"):
                    self.writer.add_scalar(f"{prefix}/{k}", v, record["iter"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _tensorboard(out_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warnings.warn("train.tensorboard=true needs the tensorboard package (pip install tensorboard); logging to metrics.jsonl only")
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))


def truncate_metrics(path: Path, iteration: int) -> None:
    """Drop log lines written after the checkpoint a run resumes from (the killed run's tail).

    A line that is not a log record (not a JSON object, or one whose ``iter`` is not a number) cannot be placed
    before or after the checkpoint: it is dropped too, with a warning naming the lines (not for a last line cut
    short by the kill, nor a blank one). ``report`` skips the same lines (``io.files.read_jsonl``)."""
    if not path.exists():
        return
    keep, bad = [], []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if line.strip() and number < len(lines):
                bad.append(number)
            continue
        at = record.get("iter", 0) if isinstance(record, dict) else None
        if isinstance(at, (int, float)) and not isinstance(at, bool):
            if at <= iteration:
                keep.append(line)
        else:
            bad.append(number)
    if bad:
        shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        warnings.warn(f"{path}: {len(bad)} line(s) that are not log records dropped on resume (line {shown})",
                      stacklevel=2)
    atomic_write_text(path, "".join(l + "\n" for l in keep))
