"""Where outputs go: checked before any work, so an unwritable ``--out`` or an ``--out`` that is a file fails
in one line at the start instead of after a whole evaluation or training run. No torch here."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class OutputPathError(ValueError):
    """An output location that cannot be used; the message names the option and the path."""


def output_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """Create the folder ``path`` (and its parents) if needed and check that files can be written into it."""
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


def output_file(path: str | os.PathLike, option: str = "--out") -> Path:
    """Check that the file ``path`` can be (re)written: not a folder, and its folder writable (created)."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{option} {path}: is a folder, not a file name")
    output_dir(path.parent if str(path.parent) else Path("."), option=f"{option} {path}: folder")
    return path
