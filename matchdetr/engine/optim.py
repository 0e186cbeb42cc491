"""Optimizer parameter groups, the learning-rate schedule and the weight EMA."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def param_groups(
    model: nn.Module,
    lr: float,
    lr_backbone: float,
    weight_decay: float,
    lr_mults: dict[str, float] | None = None,
) -> list[dict]:
    """AdamW groups: the backbone at ``lr_backbone``; parameters whose name contains a key of ``lr_mults`` at
    ``lr * mult`` (Deformable-DETR's sampling offsets at x0.1); no weight decay on norms, biases and embeddings
    that act as norms' affine terms (1-d tensors)."""
    lr_mults = lr_mults or {}
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        base = lr_backbone if name.startswith("backbone.") else lr
        for key, mult in lr_mults.items():
            if key in name:
                base = base * mult
                break
        decay = 0.0 if p.ndim <= 1 else weight_decay
        groups.setdefault((base, decay), []).append(p)
    return [{"params": ps, "lr": lr_, "initial_lr": lr_, "weight_decay": wd} for (lr_, wd), ps in groups.items()]


def lr_factor(iteration: int, drop_at: int | None, drop_factor: float, warmup: int) -> float:
    """Step schedule with linear warm-up: ``warmup`` iterations from 0.001x, then 1x, then ``drop_factor``x
    from ``drop_at`` on (None: never). A pure function of the iteration, so resuming needs no scheduler state."""
    f = drop_factor if drop_at is not None and iteration >= drop_at else 1.0
    if warmup > 0 and iteration < warmup:
        f *= 0.001 + (1 - 0.001) * iteration / warmup
    return f


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = g["initial_lr"] * factor


class ModelEMA:
    """Exponential moving average of the weights (and buffers copied), with the usual warm-up of the decay
    ``decay * (1 - exp(-updates / 2000))`` so early averages are not dominated by the random init."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.updates = decay, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / 2000))
        src = model.state_dict()
        for k, v in self.module.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(src[k].detach(), alpha=1 - d)
            else:
                v.copy_(src[k])
