"""Deterministic, resumable, distributed batch sampling.

The order of epoch ``e`` is a pure function of ``(seed, e)``, so a resumed run rebuilds it exactly and skips
the batches it already consumed; every process takes its own strided share (DistributedSampler's scheme).
"""

from __future__ import annotations

from typing import Hashable, Sequence

import torch
from torch.utils.data import Sampler


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices for one epoch at a time.

    n: dataset size; shuffle: a fresh permutation per epoch; drop_last: drop the final short batch (training),
    unless that would leave no batch at all; rank/world: this process's share.
    """

    def __init__(self, n: int, batch_size: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world: int = 1,
                 drop_last: bool = False, pad: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.rank, self.world, self.pad = rank, world, pad
        share = self._share_size()
        self.drop_last = drop_last and share >= batch_size
        self.epoch, self.start_batch = 0, 0

    def _share_size(self) -> int:
        return -(-self.n // self.world) if self.pad else len(range(self.rank, self.n, self.world))

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's order and skip its first ``start_batch`` batches (resume)."""
        self.epoch, self.start_batch = epoch, start_batch

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.pad and self.world > 1:
            total = -(-self.n // self.world) * self.world
            order = order + order[: total - self.n]  # repeat a few so every process gets equal batches
        return order[self.rank :: self.world]

    def batches_per_epoch(self) -> int:
        share = self._share_size()
        return share // self.batch_size if self.drop_last else -(-share // self.batch_size)

    def __iter__(self):
        idx = self._indices()
        for b in range(self.start_batch, self.batches_per_epoch()):
            yield idx[b * self.batch_size : (b + 1) * self.batch_size]

    def __len__(self) -> int:
        return self.batches_per_epoch() - self.start_batch


class CanvasBatchSampler(Sampler[list[int]]):
    """Batches of at most ``batch_size`` indices that share a key (evaluation and prediction: the canvas an image
    is padded to, ``sizes.canvas``), so an image's batch never changes its padding.

    keys[i]: the key of index i (None: unknown, its own group); rank/world: this process's strided share, as
    :class:`EpochBatchSampler` without padding. Groups come in order of their first index, indices in order
    within each; the same keys and batch size always give the same batches.
    """

    def __init__(self, keys: Sequence[Hashable], batch_size: int, *, rank: int = 0, world: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        groups: dict[Hashable, list[int]] = {}
        for i in range(rank, len(keys), world):
            groups.setdefault(keys[i] if keys[i] is not None else ("index", i), []).append(i)
        self.batches = [g[b : b + batch_size] for g in groups.values() for b in range(0, len(g), batch_size)]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)
