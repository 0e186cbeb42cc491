"""Where outputs go: checked before any work, so an unwritable ``--out`` or an ``--out`` that is a file fails
in one line at the start instead of after a whole evaluation or training run. No torch here.

Outputs never go inside a dataset split folder unless the caller asks (``into_dataset``, the CLI's
``--into-dataset``): a YOLO split reads every image below ``images/<split>``, so a ``predictions/`` folder
written there becomes unlabeled images of that split, and ``x.png`` written beside ``x.jpg`` takes
``labels/x.txt`` too. Split folders are recognised by their layout (:func:`dataset_split_folder`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


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
