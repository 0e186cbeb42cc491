"""A stop signal meant for the test run (Ctrl-C, a SIGTERM from `make` or a scheduler) stops it, also when a test
was training in the pytest process at that moment: the trainer takes the signal to save and stop gracefully, the
test absorbs the resulting exit code, and without `tests/stop_signals_plugin.py` the run went on with the next
test (two Ctrl-C and a SIGTERM did not stop `make test`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent

INNER = '''
import os, signal
from matchdetr.cli.errors import run_command
from matchdetr.engine.guard import StopSignals


def _training_that_takes_the_signal(signum):
    with StopSignals() as signals:  # what a training run in the test process installs
        os.kill(os.getpid(), signum)
        assert signals.received == signum  # taken: the training would save, stop and return its exit code


def test_a_training_run_takes_{name}():
    _training_that_takes_the_signal(signal.{name})


def test_after_it():
    open("ran_after", "w").close()
'''

INNER_CLI = '''
def test_an_in_process_command_interrupted():
    from matchdetr.cli.errors import run_command

    def interrupted(args):
        raise KeyboardInterrupt

    assert run_command(interrupted, None) == 130  # the CLI's exit code, absorbed by the test


def test_after_it():
    open("ran_after", "w").close()
'''


@pytest.mark.parametrize("inner,name,code", [(INNER, "SIGTERM", 128 + signal.SIGTERM), (INNER, "SIGINT", 2),
                                             (INNER_CLI, "", 2)], ids=["SIGTERM", "SIGINT", "cli-KeyboardInterrupt"])
def test_a_stop_signal_taken_in_a_test_stops_the_run(tmp_path, inner, name, code):
    (tmp_path / "test_inner.py").write_text(inner.replace("{name}", name))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "stop_signals_plugin", "test_inner.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert not (tmp_path / "ran_after").exists(), done.stdout
    assert done.returncode == code, done.stdout + done.stderr  # 2: pytest's code for an interrupted run
