"""What keeps a long run alive or stops it cleanly: non-finite step skipping and SIGINT/SIGTERM handling.

- A step whose loss or gradient is NaN/inf is skipped (no optimizer, EMA or scaler update) with a warning that
  names the iteration and the loss term (or the first parameter with a bad gradient). One bad batch costs one
  step; ``max_skips`` in a row means the model itself diverged, so the run saves a checkpoint and stops with
  :class:`NonFiniteError`, one line.
- Under fp16 loss scaling an inf gradient is the expected overflow signal: ``GradScaler`` skips that step and
  lowers the scale itself, so it is not counted, unless the scale is already below 1 (a real inf, not overflow).
- SIGINT and SIGTERM (what schedulers send before preempting a job) only set a flag; the trainer finishes the
  current step, saves a checkpoint on every process at the same iteration and raises :class:`TrainingStopped`.
  A second identical signal falls back to the previous handler (Ctrl-C twice kills at once).
"""

from __future__ import annotations

import signal
import threading
import warnings
from typing import Any, ClassVar, Iterable

import torch
from torch import Tensor


class TrainingStopped(RuntimeError):
    """The run stopped early on purpose after saving a checkpoint. ``exit_code`` is what the CLI returns."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def __reduce__(self) -> tuple:
        # BaseException pickles as ``cls(*self.args)``, which lacks exit_code here (and NonFiniteError takes
        # no exit_code at all), so a stop raised in a worker process could not be sent back to its parent.
        return _rebuild_stopped, (type(self), str(self), self.__dict__)


def _rebuild_stopped(cls: type, message: str, state: dict) -> TrainingStopped:
    err = RuntimeError.__new__(cls, message)
    err.args = (message,)
    err.__dict__.update(state)
    return err


class NonFiniteError(TrainingStopped):
    """Too many consecutive non-finite steps: the run saved its last good weights and stopped."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=2)


class NonFiniteWarning(UserWarning):
    """A training step was skipped because its loss or gradient was NaN or infinite."""


def nonfinite_terms(losses: dict[str, Tensor], total: Tensor) -> list[str]:
    """Names of the loss terms that are NaN/inf (``loss`` for the total when every term is finite)."""
    bad = [k for k, v in losses.items() if not bool(torch.isfinite(v).all())]
    return bad or ([] if bool(torch.isfinite(total).all()) else ["loss"])


def gradient_norm(grads: list[Tensor]) -> Tensor:
    """Total L2 norm of the gradients, one fused pass as ``clip_grad_norm_`` computes it (no host read)."""
    return torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())


def first_nonfinite_grad(named_params: Iterable[tuple[str, torch.nn.Parameter]]) -> str:
    """Name of the first parameter whose gradient has a NaN/inf (the slow path, after a bad step only)."""
    return next((n for n, p in named_params if p.grad is not None and not bool(torch.isfinite(p.grad).all())),
                "none on this process")


class NonFiniteGuard:
    """Counts consecutive skipped steps; ``max_skips`` <= 0 never stops the run."""

    def __init__(self, max_skips: int) -> None:
        self.max_skips, self.consecutive, self.total = max_skips, 0, 0
        self.last_reason = ""

    def skip(self, iteration: int, reason: str) -> None:
        self.consecutive += 1
        self.total += 1
        self.last_reason = reason
        limit = f"/{self.max_skips}" if self.max_skips > 0 else ""
        warnings.warn(f"iteration {iteration}: {reason}; step skipped ({self.consecutive}{limit} in a row)",
                      NonFiniteWarning, stacklevel=3)

    def ok(self) -> None:
        self.consecutive = 0

    @property
    def exhausted(self) -> bool:
        return self.max_skips > 0 and self.consecutive >= self.max_skips

    def error(self, iteration: int, checkpoint: str) -> NonFiniteError:
        return NonFiniteError(
            f"training stopped at iteration {iteration} after {self.consecutive} consecutive non-finite steps "
            f"(last: {self.last_reason}); the last good weights are in {checkpoint}. Lower train.lr, keep "
            "train.clip_max_norm > 0 or check the data, then continue with --resume "
            "(train.max_nonfinite_skips sets the limit)")


class StopSignals:
    """Context manager turning SIGINT/SIGTERM into a flag (``received`` holds the first signal number).

    Outside the main thread (where Python cannot install handlers) it does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    # Every stop signal a StopSignals took in this process. Taking one turns it into a graceful stop that the
    # caller sees as an exception or exit code; whoever owns the process besides (a test runner running
    # training in its own process) reads this to react to the signal too, rather than carry on.
    history: ClassVar[list[int]] = []

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        StopSignals.history.append(signum)
        if self.received == signum:  # the same signal twice: the user insists, stop now
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            signal.raise_signal(signum)
            return
        if self.received is None:
            self.received = signum

    def __enter__(self) -> "StopSignals":
        self.received = None
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        self._previous.clear()

    @staticmethod
    def name(signum: int | None) -> str:
        return signal.Signals(signum).name if signum is not None else "a stop signal on another process"
