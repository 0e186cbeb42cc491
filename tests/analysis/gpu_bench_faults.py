"""Jobs that fail on purpose, for ``tests/analysis/test_bench_gpu.py``: each sends one finished row first."""

from __future__ import annotations

import os
import time
from typing import Any, Callable


def raises(plan: dict[str, Any], emit: Callable[[dict[str, Any]], None], deadline: float) -> None:
    emit({"status": "ok", "ms": 1.0})
    raise ValueError("injected failure")


def hangs(plan: dict[str, Any], emit: Callable[[dict[str, Any]], None], deadline: float) -> None:
    emit({"status": "ok", "ms": 1.0})
    time.sleep(600)


def crashes(plan: dict[str, Any], emit: Callable[[dict[str, Any]], None], deadline: float) -> None:
    emit({"status": "ok", "ms": 1.0})
    os._exit(3)  # as a device fault or the OOM killer would: no exception, no message
