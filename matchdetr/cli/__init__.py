"""``matchdetr synth | train | eval | predict | export | report | models | convert | bench | demo | analyze``.

One module per command group (``synth``, ``train`` (+ eval, demo), ``predict`` (+ export, report), ``models``
(+ convert), ``analyze``, ``bench``); shared options in ``common``. Errors the user can fix (a bad option value
or key, a missing or unwritable file, a broken dataset, an absent device) end in one line,
``matchdetr: error: ...``, and exit code 2; never a traceback. Set ``MATCHDETR_DEBUG=1`` to see the traceback
instead. The policy lives in ``errors.py``.
"""

from __future__ import annotations

import argparse
import warnings
from typing import Callable, Sequence

from . import analyze, models, predict, synth, train
from .bench import add_bench
from .errors import Parser, UsageError, flush_stdout, run_command, unknown_arguments
from .paths import check_paths


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="matchdetr", description="DETR-family detectors built around better matching.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{synth,train,eval,predict,export,report,models,convert,bench,demo,analyze}")
    for add in (synth.add_synth, train.add_train, train.add_eval, predict.add_predict, predict.add_export,
                predict.add_report, models.add_models, models.add_convert, add_bench, train.add_demo,
                analyze.add_analyze):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit code (see ``errors.run_command``)."""
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
    except UsageError as err:  # reported in one line already; --help and --version still exit normally
        return int(err.code or 2)
    except SystemExit as done:  # --help printed: its text may still be buffered for a reader already gone
        code = flush_stdout(int(done.code or 0))
        if code == int(done.code or 0):
            raise
        return code
    if unknown:  # argparse's own message, plus the --set key an unknown option names (`--lr` -> train.lr)
        return unknown_arguments(args, unknown)
    warnings.formatwarning = lambda msg, cat, *_: f"warning: {msg}\n"
    return run_command(_with_path_check(parser, args.func), args)


def _with_path_check(parser: argparse.ArgumentParser, func: Callable[[argparse.Namespace], int | None]
                     ) -> Callable[[argparse.Namespace], int | None]:
    """``func`` preceded by the one check every command gets: no output may land on one of its inputs
    (``paths.py``); under the error policy, like the command itself."""

    def run(args: argparse.Namespace) -> int | None:
        check_paths(parser, args)
        return func(args)

    return run
