"""The outputs of ``matchdetr bench gpu``: ``gpu_bench.json`` (every row, status, error and budget) and
``gpu_bench.md`` (one table), in an ``--out`` folder that must not hold an earlier bench's files."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..io.files import atomic_write_text
from ..io.out_paths import OutputPathError, output_dir

RESULT_FILES = ("gpu_bench.json", "gpu_bench.md")


def prepare_out(out: str | os.PathLike) -> Path:
    """The folder ``out``, created and writable, refused when an earlier bench's results are there (they are
    never overwritten: a new --out keeps both). Checked before anything is measured."""
    path = output_dir(out)
    there = [name for name in RESULT_FILES if (path / name).exists()]
    if there:
        raise OutputPathError(f"--out {path}: already holds {', '.join(there)} of an earlier bench; "
                              "give a new --out (the default is a new timestamped folder) or move them away")
    return path


def _num(value: Any, digits: int = 1) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "" if value is None else str(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}f}" if abs(value) >= 0.01 or value == 0 else f"{value:.1e}"


def _size(size: Any) -> str:
    return f"{size[0]}x{size[1]}" if isinstance(size, list) else ""


def _row_cells(part: str, row: dict[str, Any]) -> tuple[str, str]:
    """(what was measured, the figure) of one row."""
    if row.get("status") != "ok":
        what = row.get("preset") or row.get("op") or row.get("impl") or ""
        return what, f"{row.get('status')}: {row.get('error', '')}"
    if part in ("train_step", "swin_train"):
        extra = f", compile {row['compile_s']:.0f} s ({row['backend']})" if "compile_s" in row else ""
        ckpt = ", activation checkpointing" if row.get("checkpointing") else ""
        return (f"{row['preset']} {row['mode']}, {_size(row['size'])}, batch {row['batch']}, {row['amp']}{ckpt}",
                f"{_num(row['ms'])} ms, peak {_num(row['peak_mem_mib'], 0)} MiB{extra}")
    if part == "inference":
        return (f"{row['preset']}, {_size(row['size'])}, {row['amp']}",
                f"{_num(row['ms'])} ms, {_num(row['images_per_s'])} images/s")
    if part == "deform_attn":
        return (f"{row['impl']} {row['pass']}, {_size(row['size'])} encoder (Q = S = {row['queries']}), batch {row['batch']}",
                f"{_num(row['ms'])} ms, peak {_num(row['peak_mem_mib'], 0)} MiB")
    if part == "parity":
        if "mismatched_kept" in row:
            return (f"{row['op']} ({row['shape']})", f"{row['kept']} kept, {row['mismatched_kept']} differ, "
                                                     f"{'same' if row['same_order'] else 'different'} order")
        figure = f"max abs diff {_num(row['max_abs_diff'], 2)}"
        if "max_abs_diff_grad" in row:
            figure += (f" (relative {_num(row['max_rel_diff'], 2)}), gradients {_num(row['max_abs_diff_grad'], 2)} "
                       f"(relative {_num(row['max_rel_diff_grad'], 2)})")
        return f"{row['op']} ({row['shape']})", figure
    return (f"{row['preset']}, {row['iters']} iterations, batch {row['batch']}, {row['amp']}",
            f"{row['nonfinite_steps']} non-finite steps; loss {_num(row['first_loss'], 3)} -> {_num(row['last_loss'], 3)}")


def markdown(results: dict[str, Any]) -> str:
    """One table: part, what, figure; a part that failed or ran out of time says so in its row."""
    head = (f"`matchdetr bench gpu{' --smoke' if results['smoke'] else ''}` on {results['device_name']} "
            f"({results['device']}, torch {results['torch']}, CUDA {results['cuda']}), {results['started']}, "
            f"{results['seconds']:.0f} s in all.")
    lines = [head, "", "| part | what | result |", "|---|---|---|"]
    for part, record in results["parts"].items():
        rows = [_row_cells(part, r) for r in record["rows"]]
        rows += [(j.get("preset", ""), f"{j['status']}: {j.get('error', '')}") for j in record["jobs"] if j["status"] != "ok"]
        for what, figure in rows or [("", record["status"])]:
            lines.append(f"| {record['title']} | {what} | {figure.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def write_results(results: dict[str, Any], out: Path) -> list[Path]:
    """``gpu_bench.json`` and ``gpu_bench.md`` in ``out`` (checked by :func:`prepare_out`)."""
    paths = [out / name for name in RESULT_FILES]
    atomic_write_text(paths[0], json.dumps(results, indent=2, default=str) + "\n")
    atomic_write_text(paths[1], markdown(results))
    return paths
