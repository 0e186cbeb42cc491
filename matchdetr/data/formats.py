"""Dataset formats besides COCO JSON: YOLO txt folders and Pascal VOC XML, read into a COCO dict.

``--data DIR`` finds the format by itself (``detect_format``): COCO (``annotations/instances_SPLIT.json``) first,
then YOLO (a ``*.yaml`` or ``images/SPLIT`` + ``labels/SPLIT``), then VOC (``Annotations/`` + ``JPEGImages/``
+ ``ImageSets/Main/SPLIT.txt``). The readers return the same ``{"images", "annotations", "categories"}`` dict
a COCO file holds, so ``CocoDetection`` validates, trains and evaluates them with the same code and the same
COCO metrics; ``ground_truth`` gives evaluation that dict instead of a file.

Image ids are 1..N in sorted file order; annotation ids count from 1. Category ids: the YOLO class index
(0-based, as in the label files) and the VOC class position counted from 1 (classes.txt order, else the 20
standard VOC classes, else the sorted names found).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .common import DatasetError, Problems, SplitPaths


def detect_format(root: Path, split: str) -> str | None:
    """``coco`` | ``yolo`` | ``voc`` for a ``--data`` folder (or a YOLO ``.yaml`` file), None if unknown."""
    if root.is_file() and root.suffix in (".yaml", ".yml"):
        return "yolo"
    if any((root / "annotations" / f"instances_{s}.json").is_file() for s in (split, f"{split}2017")):
        return "coco"
    from . import voc, yolo

    if yolo.yaml_file(root) is not None or (root / "labels").is_dir() or (root / split / "labels").is_dir():
        return "yolo"
    if voc.voc_root(root) is not None:
        return "voc"
    return None


def resolve_foreign_split(root: Path, split: str) -> SplitPaths | None:
    """The split of a YOLO or VOC ``--data`` folder; None for COCO or unknown layouts (the COCO lookup reports)."""
    fmt = detect_format(root, split)
    if fmt == "yolo":
        from .yolo import resolve_yolo_split

        return resolve_yolo_split(root, split)
    if fmt == "voc":
        from .voc import resolve_voc_split

        return resolve_voc_split(root, split)
    return None


def read_foreign(paths: SplitPaths, problems: Any) -> dict:
    """COCO dict of a YOLO or VOC split; per-item problems go to ``problems`` (one warning per kind)."""
    if paths.format == "yolo":
        from .yolo import read_yolo

        return read_yolo(paths, problems)
    if paths.format == "voc":
        from .voc import read_voc

        return read_voc(paths, problems)
    raise DatasetError(f"{paths.annotations}: unknown dataset format '{paths.format}' (coco, yolo or voc)")


def ground_truth(paths: SplitPaths) -> Path | dict:
    """What COCO evaluation reads: the JSON file, or the converted dict of a YOLO/VOC split."""
    if paths.format == "coco":
        return Path(paths.annotations)
    return read_foreign(paths, Problems(Path(paths.annotations)))
