"""One training step: forward, losses, backward, the non-finite guard, clipping, the optimizer and the EMA.

Every process takes the same decision at the same step: one all-reduce carries "the loss is not finite", "a
gradient is not finite" and "a stop signal arrived", so a skipped step or a stop never leaves DDP waiting.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from ..data.collate import Batch
from ..losses.criterion import SetCriterion
from . import distributed as dist
from .guard import NonFiniteGuard, StopSignals, first_nonfinite_grad, gradient_norm, nonfinite_terms
from .optim import ModelEMA


class Step:
    """``step(batch, iteration) -> logs | None``: the detached loss terms, ``loss`` and ``grad_norm`` of an applied
    step, None for a skipped one; ``stop_requested`` says whether a stop signal reached any process.

    net: what runs the forward (the DDP wrapper or the model); model: the module whose parameters are stepped."""

    def __init__(self, net: nn.Module, model: nn.Module, criterion: SetCriterion, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, autocast: Any, ema: ModelEMA | None, guard: NonFiniteGuard,
                 signals: StopSignals, clip_max_norm: float | None) -> None:
        self.net, self.model, self.criterion, self.optimizer, self.scaler = net, model, criterion, optimizer, scaler
        self.autocast, self.ema, self.guard, self.signals, self.clip = autocast, ema, guard, signals, clip_max_norm
        self.stop_requested = False

    def __call__(self, batch: Batch, iteration: int) -> dict[str, Tensor] | None:
        targets = batch.targets
        with self.autocast() if self.autocast else nullcontext():
            out = self.net(batch.images, batch.pixel_mask, targets)
        loss = self.criterion(out, targets)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss.total).backward()  # also for a non-finite loss: DDP needs every rank's backward
        self.scaler.unscale_(self.optimizer)  # a no-op without fp16 loss scaling
        grad_norm = gradient_norm([p.grad for p in self.model.parameters() if p.grad is not None])
        # One collective and one host read per step carry all three verdicts, so every process skips (or
        # stops) at the same step, else DDP hangs; the gradients are already all-reduced, the loss is not.
        flags = torch.stack([(~torch.isfinite(loss.total.detach())).float().reshape(()),
                             (~torch.isfinite(grad_norm)).float().to(loss.total.device),
                             loss.total.new_tensor(float(self.signals.received is not None))])
        bad_loss, bad_grad, stop = dist.all_reduce_sum(flags)[0].tolist()
        self.stop_requested = stop > 0
        if bad_loss > 0:
            bad = nonfinite_terms(loss.losses, loss.total)
            self.guard.skip(iteration, f"non-finite loss ({', '.join(bad) or 'on another process'})")
            self.optimizer.zero_grad(set_to_none=True)
            return None
        if bad_grad > 0:
            self._skip_bad_gradient(iteration, float(loss.total))
            return None
        if self.clip is not None:  # clip with the norm just computed rather than computing it again
            torch.nn.utils.clip_grads_with_norm_(self.model.parameters(), self.clip, grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.guard.ok()
        if self.ema is not None:
            self.ema.update(self.model)
        logs = {k: v.detach() for k, v in loss.losses.items()}
        logs["loss"] = loss.total.detach()
        logs["grad_norm"] = grad_norm.detach()
        return logs

    def _skip_bad_gradient(self, iteration: int, loss: float) -> None:
        if self.scaler.is_enabled() and self.scaler.get_scale() >= 1.0:  # fp16 overflow: the scaler's job
            self.scaler.step(self.optimizer)  # skips the update because of the inf
            self.scaler.update()  # lowers the scale
        else:
            bad_param = first_nonfinite_grad(self.model.named_parameters())
            self.guard.skip(iteration, f"non-finite gradient (loss {loss:.4g} is finite; first bad gradient: {bad_param})")
        self.optimizer.zero_grad(set_to_none=True)
