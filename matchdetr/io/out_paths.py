"""Where outputs go: checked before any work, so an unwritable ``--out`` or an ``--out`` that is a file fails
in one line at the start instead of after a whole evaluation or training run; and no output of a command lands on
one of its inputs (``refuse_overwrites``). No torch here.

Outputs never go inside a dataset split folder unless the caller asks (``into_dataset``, the CLI's
``--into-dataset``): a YOLO split reads every image below ``images/<split>``, so a ``predictions/`` folder
written there becomes unlabeled images of that split, and ``x.png`` written beside ``x.jpg`` takes
``labels/x.txt`` too. Split folders are recognised by their layout (:func:`dataset_split_folder`).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Sequence


class OutputPathError(ValueError):
    """An output location that cannot be used; the message names the option and the path."""


def _split_layout(folder: Path) -> str | None:
    """The layout whose split folder ``folder`` is, in words; None when it is none."""
    if (folder.parent / "annotations" / f"instances_{folder.name}.json").is_file():
        return "a COCO split: its images are listed in ../annotations"
    if folder.name == "images" and (folder.parent / "labels").is_dir():  # images/<split>/ and <split>/images/
        return "YOLO images, labelled from ../labels"
    if folder.name == "JPEGImages" and (folder.parent / "Annotations").is_dir():
        return "Pascal VOC JPEGImages"
    return None


def dataset_split_folder(path: str | os.PathLike) -> tuple[Path, str] | None:
    """``(folder, layout in words)`` of the dataset split folder that is ``path`` or holds it (``path`` need not
    exist): a COCO split (``X/`` beside ``annotations/instances_X.json``), a YOLO images folder (``images/``
    beside ``labels/``, so ``images/<split>`` and ``<split>/images`` and everything below), a VOC ``JPEGImages``
    beside ``Annotations``. None outside any dataset."""
    here = Path(os.path.abspath(path))
    below: Path | None = None  # the folder one level down on the way to ``here``
    for folder in (here, *here.parents):
        layout = _split_layout(folder)
        if layout is not None:
            if layout.startswith("YOLO") and below is not None and (folder.parent / "labels" / below.name).is_dir():
                return below, layout  # name the split, images/<split>, not the images folder above it
            return folder, layout
        below = folder
    return None


def check_outside_dataset(path: str | os.PathLike, option: str = "--out", flag: str | None = None) -> None:
    """Refuse, in one line naming the folder (and ``flag``, the option that allows it, if the command has one),
    an output at ``path`` inside a dataset split folder (module docstring)."""
    found = dataset_split_folder(path)
    if found is None:
        return
    folder, layout = found
    allow = f", or pass {flag} to write there anyway" if flag else ""
    raise OutputPathError(f"{option} {path}: inside the dataset split folder {folder} ({layout}); a later training "
                          f"or evaluation would read what is written there as images of that split. Choose a "
                          f"folder outside the dataset{allow}")


def output_dir(path: str | os.PathLike, option: str = "--out", *, into_dataset: bool = False,
               flag: str | None = None) -> Path:
    """Create the folder ``path`` (and its parents) if needed and check that files can be written into it.

    A folder inside a dataset split is refused unless ``into_dataset``; ``flag`` is the option that says so,
    named in the refusal."""
    if not into_dataset:
        check_outside_dataset(path, option, flag)
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{option} {path}: is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        # os.access says yes to root on a read-only mount; creating a file is the test that holds everywhere
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise OutputPathError(f"{option} {path}: cannot write there ({err.strerror or err})") from None
    return path


def output_file(path: str | os.PathLike, option: str = "--out", *, into_dataset: bool = False,
                flag: str | None = None) -> Path:
    """Check that the file ``path`` can be (re)written: not a folder, and its folder writable (created) and,
    unless ``into_dataset``, outside dataset splits (see :func:`output_dir`)."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{option} {path}: is a folder, not a file name")
    if not into_dataset:
        check_outside_dataset(path, option, flag)
    output_dir(path.parent if str(path.parent) else Path("."), option=f"{option} {path}: folder", into_dataset=True)
    return path


# ------------------------------------------------------------------------------- outputs against inputs
class PathRole(Enum):
    """What a command does with a path it is given."""

    INPUT = "input"  # read: a file, or a folder whose files (those of `Reads`) are read
    RUN = "run"  # a checkpoint file or a run directory: the weights in it are read
    IN_PLACE = "in place"  # read and rewritten by design (`report RUN_DIR`); protected from the other outputs
    OUTPUT_FILE = "output file"
    OUTPUT_DIR = "output folder"


@dataclass(frozen=True)
class Reads:
    """The files of a folder an input reads: those with one of ``suffixes`` (lower case; None: every file),
    directly in the folder or, ``recursive``, anywhere below it."""

    suffixes: frozenset[str] | None = None
    recursive: bool = True

    def covers(self, relative: Path) -> bool:
        if not self.recursive and len(relative.parts) != 1:
            return False
        return self.suffixes is None or relative.suffix.lower() in self.suffixes

    def example(self) -> str:
        """A file name this input reads (for tests and messages)."""
        return "x" + (min(self.suffixes) if self.suffixes else ".json")


EVERYTHING = Reads()
WEIGHTS = Reads(frozenset({".safetensors", ".pt", ".pth"}))  # what a run directory's loader may read


@dataclass(frozen=True)
class PathOption:
    """One path of a command line: the option as the user wrote it (``--out``, ``OUT``), the path, what the
    command does with it, which files of a folder it reads, and the files an output folder receives."""

    option: str
    path: Path
    role: PathRole
    reads: Reads = EVERYTHING
    writes: tuple[str, ...] = ()


def _same(a: Path, b: Path) -> bool:
    """The same file or folder: through symbolic links (resolve) and hard links (samefile)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def _inside(path: Path, folder: Path) -> Path | None:
    """``path`` relative to ``folder`` when it lies below it, else None."""
    try:
        return path.resolve().relative_to(folder.resolve())
    except ValueError:
        return None


def refuse_overwrites(options: Sequence[PathOption]) -> None:
    """Refuse, in one line naming both options, any output that would land on an input of the same command.

    Checked before any work, on paths only (nothing is read or created):

    - an output file or folder that is an input file or folder (also through a link);
    - an output file that is an existing file an input folder reads (``convert hf SRC SRC/model.safetensors``,
      ``export --checkpoint RUN --out RUN/model.safetensors``);
    - a file an output folder receives (``writes``) that is an input file (``eval --predictions E/results.json
      --out E``).

    A new file inside an input folder is fine: nothing is lost, and outputs are often kept beside the data.
    """
    inputs = [o for o in options if o.role in (PathRole.INPUT, PathRole.RUN, PathRole.IN_PLACE)]
    for out in (o for o in options if o.role in (PathRole.OUTPUT_FILE, PathRole.OUTPUT_DIR)):
        what = "file" if out.role is PathRole.OUTPUT_FILE else "folder"
        for inp in inputs:
            if _same(out.path, inp.path):
                kind = "folder" if inp.path.is_dir() else "file"
                raise OutputPathError(f"{out.option} {out.path}: is an input {kind} ({inp.option}); the output would "
                                      f"write over it: choose another {what}")
            if out.role is PathRole.OUTPUT_FILE and inp.path.is_dir() and out.path.is_file():
                relative = _inside(out.path, inp.path)
                if relative is not None and inp.reads.covers(relative):
                    raise OutputPathError(f"{out.option} {out.path}: would write over the input {relative} of "
                                          f"{inp.option} {inp.path}; choose another file")
            for name in out.writes:
                if _same(out.path / name, inp.path):
                    raise OutputPathError(f"{out.option} {out.path}: would write {name} over the input {inp.option} "
                                          f"{inp.path}; choose another folder")
