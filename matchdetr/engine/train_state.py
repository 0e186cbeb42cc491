"""The training state a checkpoint holds beside the weights, written and read back for exact resume: the
optimizer, the grad scaler, the EMA and every process's RNG state at the iteration it was written."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..config.tree import to_dict
from ..data.label_map import LabelMap
from . import checkpoint as ck
from . import distributed as dist
from .optim import ModelEMA


# How to run, not what is trained: on resume the command's values of these are used.
HOW_TO_RUN = ("train.iters", "train.epochs", "train.compile", "train.checkpoint_activations", "train.log_every",
              "train.tensorboard", "train.keep_last", "train.checkpoint_every", "train.eval_every",
              "train.unstable_every", "train.early_stop_patience", "train.early_stop_min_delta", "data.num_workers")


# Where the data is: the command's value when it gives one (a dataset moved since), else the run's.
DATA_SOURCE = ("data.path", "data.train_images", "data.train_annotations", "data.val_images", "data.val_annotations")


def _leaves(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_leaves(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): d}


def resume_config(cfg: Config, meta: dict[str, Any], run_dir: Path) -> Config:
    """The checkpoint's config wins (the weights, optimizer and data order belong to it) except for the keys
    of :data:`HOW_TO_RUN` (the schedule's length among them: a run can be extended); every other value the
    command changed is named in one warning, with the run's and the given value."""
    saved = Config.from_dict(meta["config"])
    mine, theirs = _leaves(to_dict(cfg)), _leaves(to_dict(saved))
    theirs.pop("model.num_classes", None)  # set from the dataset at the start, not by the user
    changed = [k for k in sorted(set(mine) | set(theirs)) if k not in HOW_TO_RUN + DATA_SOURCE and k != "preset"
               and k in theirs and mine.get(k, theirs[k]) != theirs[k]]
    moved = [k for k in DATA_SOURCE if mine.get(k) is not None and theirs.get(k) not in (None, mine.get(k))]
    if moved:
        warnings.warn(f"resuming {run_dir}: reading the data from {', '.join(f'{k}={mine[k]}' for k in moved)} "
                      f"(the run was trained on {', '.join(str(theirs[k]) for k in moved)})", stacklevel=2)
    if changed:
        listing = ", ".join(f"{k} (run: {theirs[k]!r}, given: {mine.get(k)!r})" for k in changed[:8])
        more = f" and {len(changed) - 8} more" if len(changed) > 8 else ""
        warnings.warn(f"resuming {run_dir}: the run's own values are kept for {listing}{more}; start a new run "
                      f"(another --out, or --exist-ok) to change them", stacklevel=2)
    for key in HOW_TO_RUN + DATA_SOURCE:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if key in HOW_TO_RUN or value is not None:
            setattr(getattr(saved, section), name, value)
    return saved


def save_training_state(ckdir: Path, iteration: int, model: torch.nn.Module, config: Config, label_map: LabelMap,
                        optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, ema: ModelEMA | None,
                        device: torch.device, run_id: str, best: dict[str, Any] | None = None) -> None:
    """Checkpoint ``iteration``: the state file first, then the weights, whose file marks it complete. Every
    process takes part (the RNG states are gathered); the main process writes. ``best``: the best-evaluation
    count (``engine/best.py``)."""
    # every process's own random state (CPU, and its GPU's), so each resumes its own stream
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    rngs = dist.all_gather_objects((torch.get_rng_state(), cuda))
    if not dist.is_main():
        return
    name = ck.checkpoint_name(iteration)
    state: dict[str, Any] = {"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                             "rng": [tuple(r) for r in rngs], "iteration": iteration}
    if best is not None:
        state["best"] = best
    if ema is not None:
        state["ema"], state["ema_updates"] = ema.module.state_dict(), ema.updates
    ck.save_state(ckdir / f"{name}.state.pt", state)  # state first: the weights file marks completion
    ck.save_model(model, config, label_map, ckdir / f"{name}.safetensors", iteration=iteration, run_id=run_id)


def load_training_state(weights: Path, state_path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scaler: torch.amp.GradScaler, ema: ModelEMA | None, device: torch.device) -> dict[str, Any]:
    """Restore weights, optimizer, scaler, EMA and this process's RNG streams from one checkpoint; returns its
    best-evaluation count ({} in a checkpoint written before there was one)."""
    state_dict, _ = ck.load_weights(weights)
    model.load_state_dict(state_dict)
    state = ck.load_state(state_path)
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    if ema is not None and "ema" in state:
        ema.module.load_state_dict(state["ema"])
        ema.updates = int(state["ema_updates"])
    rngs = state["rng"]
    if len(rngs) != dist.world_size():
        warnings.warn(f"{state_path}: saved by {len(rngs)} processes, resumed with {dist.world_size()}; "
                      "random streams restart, so the run is no longer bit-identical")
    cpu_state, cuda_state = rngs[min(dist.rank(), len(rngs) - 1)]
    torch.set_rng_state(cpu_state)
    if cuda_state is not None and device.type == "cuda":
        torch.cuda.set_rng_state(cuda_state, device)
    return dict(state.get("best", {}))
