"""The training state a checkpoint holds beside the weights, written and read back for exact resume: the
optimizer, the grad scaler, the EMA and every process's RNG state at the iteration it was written."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from . import checkpoint as ck
from . import distributed as dist
from .optim import ModelEMA


def resume_config(cfg: Config, meta: dict[str, Any]) -> Config:
    """The checkpoint's config wins (the weights belong to it); only the schedule length comes from ``cfg``."""
    saved = Config.from_dict(meta["config"])
    cfg.model.num_classes = saved.model.num_classes  # set from the dataset at the start, not by the user
    if saved.model != cfg.model or saved.data != cfg.data:
        warnings.warn("resuming: the model/data config of the checkpoint is used; differing options were ignored")
    saved.train.iters, saved.train.epochs = cfg.train.iters, cfg.train.epochs
    saved.train.compile = cfg.train.compile  # how to run, not what: the command's choice
    saved.train.checkpoint_activations = cfg.train.checkpoint_activations
    return saved


def save_training_state(ckdir: Path, iteration: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scaler: torch.amp.GradScaler, ema: ModelEMA | None, device: torch.device,
                        run_id: str) -> None:
    """Checkpoint ``iteration``: the state file first, then the weights, whose file marks it complete. Every
    process takes part (the RNG states are gathered); the main process writes."""
    # every process's own random state (CPU, and its GPU's), so each resumes its own stream
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    rngs = dist.all_gather_objects((torch.get_rng_state(), cuda))
    if not dist.is_main():
        return
    name = ck.checkpoint_name(iteration)
    state: dict[str, Any] = {"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                             "rng": [tuple(r) for r in rngs], "iteration": iteration}
    if ema is not None:
        state["ema"], state["ema_updates"] = ema.module.state_dict(), ema.updates
    ck.save_state(ckdir / f"{name}.state.pt", state)  # state first: the weights file marks completion
    ck.save_model(model, ckdir / f"{name}.safetensors", iteration=iteration, run_id=run_id)


def load_training_state(weights: Path, state_path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scaler: torch.amp.GradScaler, ema: ModelEMA | None, device: torch.device) -> None:
    """Restore weights, optimizer, scaler, EMA and this process's RNG streams from one checkpoint."""
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
