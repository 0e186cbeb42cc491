"""The best evaluation so far and early stopping (what YOLO and RF-DETR users look for after training).

Every evaluation of a run (periodic ones and the final one) is compared by its validation box AP. An AP above
the best so far by more than ``min_delta`` is an improvement: the trainer then writes ``best.safetensors``
beside ``model.safetensors``. ``patience`` evaluations in a row without one stop the run (``train.
early_stop_patience``). The count lives in every checkpoint, so a resumed run stops where the uninterrupted one
would have.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

BEST_WEIGHTS = "best.safetensors"


@dataclass
class BestTracker:
    """patience: evaluations without improvement before stopping (None: never stop); min_delta: AP points an
    evaluation must beat the best by; best / best_iter: the best AP so far and its iteration; since: evaluations
    since then; last_iter: the iteration of the latest evaluation counted."""

    patience: int | None = None
    min_delta: float = 0.0
    best: float | None = None
    best_iter: int | None = None
    since: int = 0
    last_iter: int | None = None

    def update(self, ap: float | None, iteration: int) -> bool:
        """Count one evaluation; True when it improves on the best (an undefined AP never does)."""
        self.last_iter = iteration
        if ap is not None and math.isfinite(ap) and (self.best is None or ap > self.best + self.min_delta):
            self.best, self.best_iter, self.since = float(ap), iteration, 0
            return True
        self.since += 1
        return False

    @property
    def exhausted(self) -> bool:
        """Whether the run should stop: ``patience`` evaluations in a row without improvement."""
        return self.patience is not None and self.since >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps (the settings come from the config, which a resume may change)."""
        return {k: v for k, v in asdict(self).items() if k in ("best", "best_iter", "since", "last_iter")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_iter, self.since = state.get("best"), state.get("best_iter"), int(state.get("since", 0))
        self.last_iter = state.get("last_iter")

    def stop_message(self, iteration: int, total: int) -> str:
        ap = "undefined" if self.best is None else f"{self.best:.2f}"
        return (f"early stop at iteration {iteration}/{total}: val AP has not improved for {self.since} evaluations "
                f"(train.early_stop_patience={self.patience}); best AP {ap} at iteration {self.best_iter} in "
                f"{BEST_WEIGHTS}, the last weights in model.safetensors; to train on, --resume with a larger "
                f"train.early_stop_patience")
