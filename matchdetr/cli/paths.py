"""Which options of a command are paths it reads and which are paths it writes, declared where the option is.

An option's argparse ``type`` is a :class:`PathArg` carrying its role (``io/out_paths.PathRole``); the value is
the string as given. Before a command runs, :func:`check_paths` collects the path options of the chosen
subcommand and ``io/out_paths.refuse_overwrites`` refuses any output that lands on an input, so a new command
is covered by declaring its options, with no check of its own. No torch here.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterator

from ..inference.outputs import IMAGE_EXTS, VIDEO_EXTS
from ..io.out_paths import EVERYTHING, WEIGHTS, PathOption, PathRole, Reads, refuse_overwrites


class PathArg:
    """An argparse ``type`` marking a path option: ``role``, the files of a folder it reads (inputs) and the
    files an output folder receives (``writes``). Returns the text unchanged."""

    __name__ = "path"  # what argparse would name in a message

    def __init__(self, role: PathRole, reads: Reads = EVERYTHING, writes: tuple[str, ...] = ()) -> None:
        self.role, self.reads, self.writes = role, reads, writes

    def __call__(self, text: str) -> str:
        return text

    def example_name(self) -> str:
        return self.reads.example()

    def __repr__(self) -> str:
        return f"PathArg({self.role.value})"


# ----------------------------------------------------------------------------------- the kinds of path
input_path = PathArg(PathRole.INPUT)  # a file (or a folder, all of it read)
dataset_path = PathArg(PathRole.INPUT)  # a dataset folder, annotation file or image folder: all of it is data
checkpoint_path = PathArg(PathRole.RUN, WEIGHTS)  # a checkpoint file or a run directory
in_place_path = PathArg(PathRole.IN_PLACE)
output_file = PathArg(PathRole.OUTPUT_FILE)


# images, videos or folders of them (`predict`): a folder's images and videos are read, not its subfolders
images_path = PathArg(PathRole.INPUT, Reads(frozenset(IMAGE_EXTS | VIDEO_EXTS), recursive=False))


def source_dir(*suffixes: str) -> PathArg:
    """A folder whose files with these suffixes are read (``convert hf SRC``: config.json, *.safetensors)."""
    return PathArg(PathRole.INPUT, Reads(frozenset(suffixes), recursive=False))


def output_dir(*writes: str) -> PathArg:
    """An output folder; ``writes``: the files the command puts there whose names are known in advance."""
    return PathArg(PathRole.OUTPUT_DIR, writes=writes)


# ------------------------------------------------------------------------------------------- the check
def display_name(action: argparse.Action) -> str:
    """How messages name an option: ``--out``, or a positional's name in capitals (``OUT``, ``RUN_DIR``)."""
    return action.option_strings[0] if action.option_strings else str(action.metavar or action.dest).upper()


def leaf_parsers(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
                 ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every runnable subcommand: ``(("convert", "hf"), its parser)``, ..."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
        return
    for name, sub in subs[0].choices.items():
        yield from leaf_parsers(sub, (*prefix, name))


def chosen_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The subcommand's parser that parsed ``args`` (followed through the sub-parser values in ``args``)."""
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        value = getattr(args, subs[0].dest, None) if subs else None
        if value is None or value not in subs[0].choices:
            return parser
        parser = subs[0].choices[value]


def path_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[PathOption]:
    """The declared path options of the subcommand that parsed ``args``, with the values given."""
    found = []
    for action in chosen_parser(parser, args)._actions:
        kind = action.type
        if not isinstance(kind, PathArg):
            continue
        values = getattr(args, action.dest, None)
        for value in values if isinstance(values, list) else [values]:
            if value is not None and str(value):
                found.append(PathOption(display_name(action), Path(value), kind.role, kind.reads, kind.writes))
    return found


def check_paths(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse (one line) a command line whose outputs would land on its inputs; run before the command."""
    refuse_overwrites(path_options(parser, args))
