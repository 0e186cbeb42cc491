"""``results.csv`` beside a run's ``metrics.jsonl``: one row per record, one column per key, kept in step while
training runs (no torch: ``matchdetr report`` uses it too)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

from ..io.files import atomic_write_text, read_jsonl

_FIRST = ("type", "iter", "epoch", "lr", "loss")


def _columns(records: Sequence[dict], start: Sequence[str] = ()) -> list[str]:
    cols = list(start)
    for key in _FIRST:
        if key not in cols and any(key in r for r in records):
            cols.append(key)
    for r in records:
        cols += [k for k in r if k not in cols]
    return cols


def _cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return json.dumps(v) if isinstance(v, (dict, list)) else v


def csv_text(columns: list[str], rows: Sequence[dict], header: bool = True) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if header:
        w.writerow(columns)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in columns])
    return buf.getvalue()


class ResultsCsv:
    """``results.csv`` kept in step with ``metrics.jsonl``: a row per record, appended; the file is rewritten
    (atomically) only when a record brings a new column, e.g. the first evaluation."""

    def __init__(self, path: str | os.PathLike, metrics_jsonl: str | os.PathLike) -> None:
        self.path = Path(path)
        self.rows = read_jsonl(metrics_jsonl)[0]  # also what a resumed run kept
        self.columns = _columns(self.rows)
        atomic_write_text(self.path, csv_text(self.columns, self.rows))

    def append(self, record: dict) -> None:
        self.rows.append(record)
        if any(k not in self.columns for k in record):
            self.columns = _columns(self.rows, self.columns)
            atomic_write_text(self.path, csv_text(self.columns, self.rows))
        else:
            with open(self.path, "a", encoding="utf-8", newline="") as f:
                f.write(csv_text(self.columns, [record], header=False))


def write_results_csv(metrics_jsonl: str | os.PathLike, out_csv: str | os.PathLike) -> Path:
    """``results.csv`` from a ``metrics.jsonl`` in one go."""
    ResultsCsv(out_csv, metrics_jsonl)
    return Path(out_csv)
