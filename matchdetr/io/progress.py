"""Progress output: a tqdm bar on a terminal, plain lines anywhere else.

tqdm redraws its bar with carriage returns; written to a log file or a CI console those become one endless
line, and with the bar switched off a long run printed nothing until the end. So a bar is drawn only when
stderr is a terminal and the caller wants one; otherwise training prints a plain line every ``log_every``
iterations (``train 40/800 (5%) loss 12.3456 lr 2.0e-04 | 1.9 it/s, 6m40s left``).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import tqdm


def is_terminal() -> bool:
    """Whether progress bars can be drawn (stderr, where tqdm writes, is a terminal)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class TrainProgress:
    """The training loop's progress: ``update()`` every iteration, ``record()`` at every log line.

    bar: draw a tqdm bar (only honoured on a terminal); otherwise ``record`` prints a plain line.
    enabled: False on the processes that are not the main one (nothing is printed there).
    """

    def __init__(self, total: int, initial: int, bar: bool, enabled: bool = True, desc: str = "train") -> None:
        self.total, self.start_iter, self.enabled, self.desc = total, initial, enabled, desc
        self.start, self.updates = time.time(), 0
        self.bar: Any = (tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True)
                         if enabled and bar and is_terminal() else None)

    def update(self) -> None:
        if self.bar is not None:
            self.bar.update(1)
        elif self.enabled and self.updates == 0:  # without a bar the log lines come later: say the loop runs
            print(f"{self.desc} {self.start_iter + 1}/{self.total}: first iteration done in "
                  f"{time.time() - self.start:.1f} s", flush=True)
        self.updates += 1

    def record(self, iteration: int, record: dict[str, Any]) -> None:
        """A log record of ``iteration`` (``loss``, ``lr``): bar postfix, or one plain line."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.1e}")
            return
        done = iteration - self.start_iter
        elapsed = time.time() - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        left = f", {_clock((self.total - iteration) / rate)} left" if rate > 0 and iteration < self.total else ""
        print(f"{self.desc} {iteration}/{self.total} ({100 * iteration / max(self.total, 1):.0f}%) loss "
              f"{record['loss']:.4f} lr {record['lr']:.1e} | {rate:.2f} it/s{left}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Progress:
    """Progress of a counted loop: a tqdm bar on a terminal; elsewhere a plain line at most every ``every_s``
    seconds and one at the end (``eval 96/250 images, 8 s``), so a log file shows a stage longer than a few
    seconds as it happens. ``enabled=False`` prints nothing at all."""

    def __init__(self, total: int, desc: str, unit: str = "it", enabled: bool = True, every_s: float = 10.0) -> None:
        self.total, self.desc, self.unit, self.enabled, self.every_s = total, desc, unit, enabled, every_s
        self.done, self.start = 0, time.time()
        self.last = self.start
        self.bar: Any = (tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)
                         if enabled and is_terminal() else None)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and time.time() - self.last >= self.every_s and self.done < self.total:
            self.last = time.time()
            self._line()

    def _line(self) -> None:
        print(f"{self.desc} {self.done}/{self.total} {self.unit}, {_clock(time.time() - self.start)}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and time.time() - self.start >= self.every_s:  # a short stage needs no closing line
            self._line()
