"""Where ``matchdetr predict`` writes, decided before anything is written; no torch here.

Rules:

- Inputs are expanded in order (a folder: its images and videos, non-recursive, sorted); a file named twice
  (also through another path) is predicted once.
- Each input gets its own output name: ``<stem>.png``. Inputs whose stems clash (compared case-insensitively,
  as macOS and Windows do) add their extension when the extensions differ (``x.jpg`` + ``x.png`` ->
  ``x_jpg.png``, ``x_png.png``) and their folder's name when the file names are the same (``A/img.jpg`` +
  ``B/img.jpg`` -> ``A_img.png``, ``B_img.png``); ``_2``, ``_3`` ... in input order if that still clashes.
  Video frames are ``<name>_f<frame:06d>.png`` under their video's name.
- Nothing is ever written over an input: ``--out`` may not be an input folder or an input file, and no output
  (PNG, ``detections.json``, ``--coco-json``) may land on an input file. Other files of the same names in
  ``--out`` (a previous prediction's) are replaced.
- Nothing is written inside a dataset split folder (``io/out_paths.py``) unless asked (``--into-dataset``): run
  from inside ``images/val``, the default ``predictions/`` would become unlabeled val images.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable, Sequence

from ..io.decode import IMAGE_SUFFIXES as IMAGE_EXTS
from ..io.out_paths import OutputPathError, output_dir, output_file

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
DETECTIONS_JSON = "detections.json"


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Image and video files of ``inputs`` in order, each file once; FileNotFoundError for a missing one."""
    out: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_EXTS | VIDEO_EXTS)
        elif p.exists():
            found = [p]
        else:
            raise FileNotFoundError(f"{p}: no such image, video or folder")
        for q in found:
            key = q.resolve()
            if key in seen:
                warnings.warn(f"{q}: given more than once; predicted once", stacklevel=2)
                continue
            seen.add(key)
            out.append(q)
    return out


def output_names(paths: Sequence[Path]) -> dict[Path, str]:
    """``{input: output stem}``, unique per input (module docstring)."""
    groups: dict[str, list[Path]] = {}
    for p in paths:
        groups.setdefault(p.stem.casefold(), []).append(p)
    names: dict[Path, str] = {}
    taken: set[str] = set()
    for p in paths:
        group = groups[p.stem.casefold()]
        base = p.stem
        if len(group) > 1:
            ext = p.suffix.lstrip(".").lower()
            if len({q.suffix.lower() for q in group}) > 1:
                base = f"{base}_{ext}"  # x.jpg + x.png -> x_jpg, x_png
            if sum(q.name.casefold() == p.name.casefold() for q in group) > 1:
                base = f"{p.parent.name}_{base}" if p.parent.name else base  # A/img.jpg + B/img.jpg -> A_img, B_img
        name, n = base, 1
        while name.casefold() in taken:
            n += 1
            name = f"{base}_{n}"
        taken.add(name.casefold())
        names[p] = name
    return names


INTO_DATASET = "--into-dataset"  # the option that lets predict write inside a dataset split folder


def check_outputs(inputs: Sequence[str | os.PathLike], out: str | os.PathLike,
                  coco_json: str | os.PathLike | None = None,
                  into_dataset: bool = False) -> tuple[list[Path], dict[Path, str]]:
    """Refuse (one line) any ``--out`` / ``--coco-json`` that would write over an input, or inside a dataset
    split folder unless ``into_dataset``; create ``--out``.

    Returns the expanded inputs and their output names.
    """
    paths = expand_inputs(inputs)
    if not paths:
        raise FileNotFoundError(f"no images or videos found in {', '.join(map(str, inputs))}")
    names = output_names(paths)
    out_dir = Path(out)
    resolved_out = out_dir.resolve()
    sources = {p.resolve(): p for p in paths}
    if resolved_out in sources:
        raise OutputPathError(f"--out {out}: is an input file; give an output folder")
    if resolved_out in {Path(i).resolve() for i in inputs if Path(i).is_dir()}:
        raise OutputPathError(f"--out {out}: is an input folder; predictions would be written among (and over) "
                              "the inputs: choose another folder")
    planned = [resolved_out / DETECTIONS_JSON] + [resolved_out / f"{n}.png" for n in names.values()]
    if coco_json:
        planned.append(Path(coco_json).resolve())
    hit = next((q for q in planned if q in sources), None)
    if hit is not None:
        option = "--coco-json" if coco_json and hit == Path(coco_json).resolve() else "--out"
        raise OutputPathError(f"{option}: would write over the input {sources[hit]}; choose another "
                              f"{'file' if option == '--coco-json' else 'folder'}")
    output_dir(out_dir, into_dataset=into_dataset, flag=INTO_DATASET)
    if coco_json:
        output_file(coco_json, "--coco-json", into_dataset=into_dataset, flag=INTO_DATASET)
    return paths, names
