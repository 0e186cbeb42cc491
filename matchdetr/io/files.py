"""Atomic file writes: a temporary file in the same folder, fsync, then rename onto the target.

A crash, a kill or a full disk during a write leaves the previous file intact, never half a file; readers
polling the file (a dashboard, a resuming run) see either the old or the new version.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def _umask() -> int:
    """The process umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` to produce the file, fsync it, then rename it onto ``path``.

    The file gets the mode a plain ``open(path, "w")`` would give it (``0o666`` less the umask): ``mkstemp``
    creates its file ``0o600``, which would otherwise survive the rename and hide outputs from the group.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, **dump_kwargs: Any) -> None:
    atomic_write_text(path, json.dumps(obj, **dump_kwargs))


class JsonFileError(ValueError):
    """A file that should hold JSON and does not; the one-line message names it and where parsing stopped."""


def read_json(path: str | os.PathLike, what: str) -> Any:
    """The parsed JSON of ``path``, ``what`` naming the kind of file for the message when it is not UTF-8 JSON
    (JsonFileError); a missing or unreadable file is the OSError, whose message names it too."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise JsonFileError(f"{path}: invalid JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    except UnicodeDecodeError:
        raise JsonFileError(f"{path}: not UTF-8 text, not {what}") from None


def read_jsonl(path: str | os.PathLike) -> tuple[list[dict[str, Any]], list[int]]:
    """The JSON-object lines of a ``.jsonl`` file (``metrics.jsonl``) and the numbers of the lines that are not
    one (e.g. cut short by a kill). A missing file has no records."""
    records: list[dict[str, Any]] = []
    bad: list[int] = []
    path = Path(path)
    if not path.exists():
        return records, bad
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                rec = None
            if isinstance(rec, dict):
                records.append(rec)
            else:
                bad.append(lineno)
    return records, bad
