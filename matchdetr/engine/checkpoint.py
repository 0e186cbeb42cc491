"""Checkpoints: weights in safetensors, training state loaded with ``torch.load(weights_only=True)``.

Layout of a run directory::

    RUN_DIR/config.json             the resolved config
    RUN_DIR/metrics.jsonl           one JSON object per log line
    RUN_DIR/checkpoints/iter_0000500.safetensors   weights + metadata (config, label map, iteration)
    RUN_DIR/checkpoints/iter_0000500.state.pt      optimizer, schedule, RNG, EMA, data position
    RUN_DIR/model.safetensors       the final weights (EMA weights when EMA is on)

Every file is written to a temporary name, fsynced and renamed, so a crash or a full disk during a save
leaves the previous checkpoint intact. A checkpoint counts as complete only when both of its files exist and
the state file is written first, so the weights file marks completion.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Collection

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import Tensor, nn

from ..config import Config
from ..data.label_map import LabelMap

from ..io.files import atomic_write
from ..io.safe_load import refusal_reason, refused_global

# 2: the config in per-component form (``model.arch`` a mapping); 1 (flat) is migrated when read
FORMAT_VERSION = 2
_META_KEY = "matchdetr"
_CKPT_RE = re.compile(r"^iter_(\d+)\.safetensors$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read; the one-line message names the file."""


def save_weights(path: str | os.PathLike, state_dict: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """Write weights and a JSON metadata blob (config, label map, ...) to one safetensors file."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    # Tied or shared tensors are stored once per name; safetensors refuses aliasing, so clone duplicates.
    seen: dict[int, str] = {}
    for k, v in tensors.items():
        ptr = v.data_ptr()
        if v.numel() and ptr in seen:
            tensors[k] = v.clone()
        seen[ptr] = k
    metadata = {_META_KEY: json.dumps({"format_version": FORMAT_VERSION, **meta}, sort_keys=True)}
    _write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def save_model(module: nn.Module, config: Config, label_map: LabelMap, path: str | os.PathLike,
               iteration: int | None = None, run_id: str | None = None) -> None:
    """One safetensors file: a detector's weights + its config + label map, everything ``matchdetr.load`` needs
    (plus, from training, the iteration and the id of the run that wrote it)."""
    meta: dict[str, Any] = {"config": config.to_dict(), "label_map": label_map.to_dict()}
    if iteration is not None:
        meta["iteration"] = iteration
    if run_id is not None:
        meta["run_id"] = run_id
    save_weights(path, module.state_dict(), meta)


# What a full disk or a lost mount raises from the writers: an OSError from our own file calls, but from inside
# safetensors' Rust writer a SafetensorError or a RuntimeError ("IoError(... StorageFull ...)"), and from
# torch.save's zip writer a RuntimeError ("PytorchStreamWriter failed writing file ...").
_WRITE_ERRORS = (OSError, RuntimeError, SafetensorError)


def _write(path: str | os.PathLike, write: Any) -> None:
    """Atomic write; a failure is one line naming the file and what is kept (``_kept``), which the atomic write
    left exactly as it was."""
    try:
        atomic_write(path, write)
    except _WRITE_ERRORS as err:
        if isinstance(err, OSError) and err.strerror:
            reason = err.strerror
        else:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: cannot write checkpoint ({reason}); {_kept(Path(path))}") from None


def _kept(path: Path) -> str:
    """What a failed write of ``path`` leaves to continue from: the newest complete checkpoint of its run (a
    checkpoint's two files), and the previous version of the file itself (the atomic write never touched it)."""
    in_run = path.parent.name == "checkpoints"
    done = checkpoint_paths(path.parent.parent if in_run else path.parent)
    kept = [f"the newest complete checkpoint, {done[-1][1]}, is intact (continue with --resume)"] if done else []
    if path.exists():
        kept.append(f"{path.name} keeps its previous content")
    if in_run and not done:
        kept.append("no earlier checkpoint of this run was saved")
    return "; ".join(kept) or "nothing was written"


_PICKLE_SUFFIXES = {".pth", ".pt", ".bin", ".ckpt", ".pkl", ".tar"}


def _looks_like_torch_pickle(path: Path) -> bool:
    """A ``torch.save`` file (a zip archive, or a bare pickle) or a file with such a suffix."""
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata blob of a safetensors file written by :func:`save_weights`."""
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
    except (SafetensorError, OSError, ValueError) as err:
        if Path(path).is_file() and _looks_like_torch_pickle(Path(path)):
            raise CheckpointError(
                f"{path}: not a readable safetensors file but a PyTorch pickle (.pth), which matchdetr never loads as "
                f"a model; convert released weights first: matchdetr convert official --family dino|stable-dino|sam-detr {path} OUT.safetensors (or "
                "matchdetr convert hf DIR OUT.safetensors for HF transformers), then pass OUT.safetensors") from None
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    if raw is None:
        raise CheckpointError(f"{path}: safetensors file has no matchdetr metadata (not a matchdetr checkpoint)")
    return json.loads(raw)


def load_weights(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, Any]]:
    meta = read_meta(path)
    try:
        return load_file(str(path)), meta
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: cannot read weights ({err})") from None


def save_state(path: str | os.PathLike, state: dict[str, Any]) -> None:
    _write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Training state, loaded without unpickling arbitrary objects."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure is reported the same way, naming the file
        if refused_global(err):  # a pickled object that unpickling would call into: never executed, refused
            raise CheckpointError(f"{path}: refused by torch.load(weights_only=True): {refusal_reason(err)}; "
                                  "matchdetr never unpickles arbitrary objects; not a matchdetr training state") from None
        raise CheckpointError(f"{path}: refused or unreadable training state ({refusal_reason(err)})") from None


def checkpoint_paths(run_dir: str | os.PathLike) -> list[tuple[int, Path, Path]]:
    """Complete checkpoints of a run, oldest first: ``(iteration, weights_path, state_path)``."""
    ckdir = Path(run_dir) / "checkpoints"
    found = []
    if ckdir.is_dir():
        for p in ckdir.iterdir():
            m = _CKPT_RE.match(p.name)
            state = p.with_name(f"iter_{m.group(1)}.state.pt") if m else None
            if m and state is not None and state.exists():
                found.append((int(m.group(1)), p, state))
    return sorted(found)


def newest_complete(run_dir: str | os.PathLike) -> tuple[int, Path, Path] | None:
    """The newest checkpoint whose two files can both be opened, or None; unreadable ones are skipped with a
    warning (a file damaged after it was written: a copy cut short, a disk error)."""
    for found in reversed(checkpoint_paths(run_dir)):
        try:
            read_meta(found[1])
            with open(found[2], "rb") as f:  # torch.save writes a zip: its central directory sits at the end
                f.seek(max(os.path.getsize(found[2]) - 22, 0))
                if b"PK\x05\x06" not in f.read():
                    raise CheckpointError(f"{found[2]}: training state is truncated")
        except (CheckpointError, OSError, json.JSONDecodeError) as err:
            warnings.warn(f"skipping unreadable checkpoint: {err}", stacklevel=2)
            continue
        return found
    return None


def checkpoint_name(iteration: int) -> str:
    return f"iter_{iteration:07d}"


def run_id_of(weights: str | os.PathLike) -> str | None:
    """The id of the run that wrote a checkpoint (None: written before run ids existed, or unreadable)."""
    try:
        value = read_meta(weights).get("run_id")
    except (CheckpointError, json.JSONDecodeError):
        return None
    return value if isinstance(value, str) else None


def prune(run_dir: str | os.PathLike, keep_last: int, run_ids: Collection[str | None] | None = None) -> None:
    """Delete all but the newest ``keep_last`` complete checkpoints (and stray temporary files).

    run_ids: only checkpoints whose metadata carries one of these run ids are considered (None in it: also
    those without an id); a checkpoint of any other run is never deleted. ``None``: every checkpoint.
    """
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    cks = checkpoint_paths(run_dir)
    if run_ids is not None:
        cks = [c for c in cks if run_id_of(c[1]) in run_ids]
    for _, w, s in cks[: max(len(cks) - keep_last, 0)]:
        w.unlink(missing_ok=True)
        s.unlink(missing_ok=True)
    ckdir = Path(run_dir) / "checkpoints"
    if ckdir.is_dir():
        for p in ckdir.glob(".*.tmp"):
            p.unlink(missing_ok=True)
        newest = cks[-1][0] if cks else -1
        for p in ckdir.glob("iter_*.state.pt"):  # state files whose weights never landed (a kill mid-save)
            m = re.match(r"^iter_(\d+)\.state\.pt$", p.name)
            if m and int(m.group(1)) < newest and not p.with_name(f"iter_{m.group(1)}.safetensors").exists():
                p.unlink(missing_ok=True)


def newest_weights(path: str | os.PathLike) -> Path:
    """Resolve a checkpoint file or a run directory to the weights file to load.

    A run directory gives its newest complete checkpoint, or ``model.safetensors`` when it is newer or alone.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint file or run directory")
    candidates = [w for _, w, _ in checkpoint_paths(path)]
    final = path / "model.safetensors"
    if final.exists():
        candidates.append(final)
    if not candidates:
        raise CheckpointError(f"{path}: run directory holds no checkpoint (checkpoints/iter_*.safetensors or model.safetensors)")
    return max(candidates, key=lambda p: (read_meta(p).get("iteration", -1), p.name == "model.safetensors"))
