"""A stop signal meant for the test run stops it, also when a test took it (loaded by conftest.py).

Tests train and run commands in the pytest process. A training run turns SIGINT / SIGTERM into a graceful stop
(``engine/guard.py: StopSignals``: save, stop, exit code 128 + signal) and the command line turns Ctrl-C into
exit code 130 (``cli/errors.py``); the test then absorbs that answer and the run went on with the next test, so
two Ctrl-C and a SIGTERM did not stop ``make test``. After each test, a signal taken that way ends the run:
SIGTERM with exit code 143, SIGINT as pytest's own interruption. Tests that send themselves signals on purpose
are marked ``sends_stop_signals``.
"""

from __future__ import annotations

import signal
from typing import Any, Iterator

import pytest


def _taken() -> list[int]:
    from matchdetr.cli.errors import INTERRUPTED
    from matchdetr.engine.guard import StopSignals

    return [*StopSignals.history, *INTERRUPTED]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sends_stop_signals: the test sends itself SIGINT/SIGTERM on purpose")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[Any]:
    before = len(_taken())
    try:
        return (yield)
    finally:
        new = _taken()[before:]
        if new and item.get_closest_marker("sends_stop_signals") is None:
            if signal.SIGTERM in new:
                pytest.exit(f"stopped by SIGTERM during {item.nodeid}", returncode=128 + signal.SIGTERM)
            raise KeyboardInterrupt(f"SIGINT during {item.nodeid}")
