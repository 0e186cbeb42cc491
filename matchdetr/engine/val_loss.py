"""The validation loss: the training criterion on the forwards of an evaluation (eval mode, no denoising or
one-to-many sets), logged beside AP as ``val_loss`` and ``val_loss_<term>``."""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from ..losses.criterion import SetCriterion
from ..structures import DetectorOutput, Target


class ValLoss:
    """Sums every loss term over an evaluation's images (each batch's value times its image count).

    The criterion is copied with a per-process GT normaliser: processes evaluate different numbers of batches,
    so a collective per batch would leave one waiting. Its random draws (the mask loss samples points) run on a
    forked random state, so an evaluation leaves the global one as training left it (exact resume)."""

    def __init__(self, criterion: SetCriterion, device: torch.device) -> None:
        self.criterion = copy.copy(criterion)
        self.criterion.reduce = lambda x: (x, 1)
        self.devices = [device] if device.type == "cuda" else []
        self.totals: dict[str, Tensor] = {}  # on the device: read back once, in sums(), not per batch
        self.images = 0

    def add(self, out: DetectorOutput, targets: list[Target]) -> None:
        with torch.random.fork_rng(devices=self.devices):
            loss = self.criterion(out, targets)
        terms: dict[str, Tensor] = {"loss": loss.total, **loss.losses}
        for key, value in terms.items():
            self.totals[key] = self.totals.get(key, 0.0) + value.detach().float() * len(targets)
        self.images += len(targets)

    def sums(self) -> tuple[dict[str, float], int]:
        """This process's sums and image count (gathered by the main process)."""
        return {k: float(v) for k, v in self.totals.items()}, self.images

    @staticmethod
    def mean(parts: list[tuple[dict[str, float], int]]) -> dict[str, float]:
        """Image-weighted means over every process's sums, keyed ``val_loss`` and ``val_loss_<term>``."""
        images = sum(n for _, n in parts)
        keys = dict.fromkeys(k for sums, _ in parts for k in sums)
        return {f"val_{k}": sum(s.get(k, 0.0) for s, _ in parts) / max(images, 1) for k in keys}
