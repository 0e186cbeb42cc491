"""Who owns a run directory: one run per folder, never two mixed, never one lost by accident.

Rules for ``train --out DIR`` (``train(..., resume=, exist_ok=)``):

- DIR missing, empty, or holding only files matchdetr does not write: a new run starts there.
- DIR holds another run's files (:data:`RUN_FILES`) and neither ``--resume`` nor ``--exist-ok``: refused in
  one line naming what is there and the three ways on.
- ``--resume``: the run continues from its newest complete checkpoint. With no checkpoint to continue, it
  starts fresh only if DIR holds no run files (else refused, as above: its metrics would mix with the new ones).
- ``--exist-ok``: DIR's run files are deleted first (exactly :data:`RUN_FILES`, the folders ``eval/``
  and ``tensorboard/`` that only training writes, and in ``checkpoints/`` only checkpoint files and their
  temporary files); any other file stays. ``resume=True, exist_ok=True`` together (what ``matchdetr demo``
  and ``bench convergence`` pass; the CLI takes one of the two): continue when there is a checkpoint, else
  start over.

Each run has an id (written into every checkpoint's metadata); checkpoint pruning deletes only checkpoints
carrying the current run's id (``checkpoint.prune``).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from ..io.out_paths import output_dir

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Config

# Files and folders a run (training, its evaluations, `report`, `demo`, `analyze` defaults) writes into its
# directory. Folders are removed whole: nothing else writes into them.
RUN_FILES = ("config.json", "metrics.jsonl", "results.csv", "model.safetensors", "best.safetensors", "training_curves.png",
             "predictions.png", "per_class_ap.csv", "per_class_ap.png", "per_class_segm_ap.png", "pr_curves.png",
             "pr_curves.npz", "confusion_matrix.csv", "confusion_matrix.png")
RUN_FOLDERS = ("eval", "tensorboard", "unstable", "errors")
_CHECKPOINT_FILE = re.compile(r"^(iter_\d+\.(safetensors|state\.pt)|\.iter_\d+\.(safetensors|state\.pt)\..*\.tmp)$")


class RunDirError(ValueError):
    """A run directory that cannot be used as asked; one line saying what is there and what to do."""


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def run_files(out_dir: Path) -> list[Path]:
    """The files and folders of a previous run in ``out_dir`` (what ``--exist-ok`` deletes)."""
    if not out_dir.is_dir():
        return []
    found = [out_dir / n for n in RUN_FILES if (out_dir / n).exists()]
    found += [out_dir / n for n in RUN_FOLDERS if (out_dir / n).is_dir()]
    ckdir = out_dir / "checkpoints"
    if ckdir.is_dir():
        found += sorted(p for p in ckdir.iterdir() if _CHECKPOINT_FILE.match(p.name))
    return found


def _describe(out_dir: Path, files: list[Path]) -> str:
    top = sorted({p.relative_to(out_dir).parts[0] + ("/" if p.is_dir() or p.parent != out_dir else "")
                  for p in files})
    return ", ".join(top[:6]) + (f" and {len(top) - 6} more" if len(top) > 6 else "")


def prepare_run_dir(out_dir: str | os.PathLike, resume: bool, exist_ok: bool, has_checkpoint: bool,
                    init: str = "", main_process: bool = True) -> Path:
    """Apply the module's rules before a run starts; returns the folder (created, checked writable).

    has_checkpoint: whether ``out_dir`` holds a complete checkpoint to resume from.
    init: the ``--init`` path, refused when ``--exist-ok`` would delete it first.
    main_process: only the main process deletes (the others see the same folder).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out}: is a file, not a run directory")
    if resume and has_checkpoint:
        return output_dir(out) if main_process else out
    files = run_files(out)
    if files and not exist_ok:
        what = _describe(out, files)
        if resume:
            raise RunDirError(f"--resume: {out} has no complete checkpoint to continue, but holds another run's files "
                              f"({what}); pass --exist-ok to delete them and start over there, or use a fresh --out")
        raise RunDirError(f"--out {out} already holds a run ({what}); continue it with --resume, start over there "
                          "with --exist-ok (deletes that run's files), or use a fresh --out")
    if files and init:
        target = Path(init).resolve()
        # the checkpoint itself, a folder it lies in (eval/, checkpoints/), or a folder holding what is deleted
        if any(target == p or p in target.parents or target in p.parents for p in (q.resolve() for q in files)):
            raise RunDirError(f"--init {init} is inside --out {out}, whose run files --exist-ok would delete first; "
                              "copy the checkpoint elsewhere or use a fresh --out")
    if files and main_process:
        for p in files:
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
    return output_dir(out) if main_process else out


def saved_config(run_dir: str | os.PathLike) -> "Config":
    """The config a run directory was trained with: its newest checkpoint's (the weights belong to it), else its
    ``config.json``; a one-line RunDirError when it holds neither."""
    import json

    from ..config import Config
    from .checkpoint import newest_complete, read_meta

    run = Path(run_dir)
    found = newest_complete(run) if run.is_dir() else None
    if found is not None:
        return Config.from_dict(read_meta(found[1])["config"])
    path = run / "config.json"
    if not path.is_file():
        raise RunDirError(f"{run}: no run to continue here (no checkpoints/iter_*.safetensors, no config.json)")
    try:
        return Config.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as err:
        raise RunDirError(f"{path}: not readable JSON ({err.msg} at line {err.lineno})") from None
