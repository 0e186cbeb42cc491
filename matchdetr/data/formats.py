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

import torch
from PIL import Image

from ..decode import IMAGE_SUFFIXES  # noqa: F401  (re-exported for the YOLO / VOC readers)
from .coco import DatasetError, SplitPaths
from .images import ImageLoadError, exif_transform_boxes

_INVERSE_ORIENTATION = {6: 8, 8: 6}  # the others (2, 3, 4, 5, 7) are their own inverse


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
    from .coco import _Problems

    return read_foreign(paths, _Problems(Path(paths.annotations)))


def image_header(path: Path) -> tuple[int, int, int]:
    """``(width, height, EXIF orientation)`` of the stored pixels, reading the header only."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            try:
                orientation = int(img.getexif().get(0x0112, 1))
            except Exception:  # an unreadable EXIF block: the decoder ignores it too
                orientation = 1
    except Exception as err:  # PIL raises many types on bad files, and DecompressionBombError on huge ones
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ImageLoadError(f"{path}: cannot read image header ({reason})") from None
    return w, h, orientation if orientation in range(1, 9) else 1


def upright_to_stored(xyxy: list[list[float]], orientation: int, stored: tuple[int, int]) -> list[list[float]]:
    """Boxes drawn on the upright (EXIF-applied) image -> the stored frame, which COCO dicts use (see
    ``images.align_boxes``). ``stored`` is the ``(w, h)`` of the stored pixels."""
    if orientation == 1 or not xyxy:
        return xyxy
    upright = stored if orientation in (2, 3, 4) else (stored[1], stored[0])
    inverse = _INVERSE_ORIENTATION.get(orientation, orientation)
    return exif_transform_boxes(torch.tensor(xyxy, dtype=torch.float64), inverse, upright).tolist()


def coco_dict(images: list[dict], boxes: list[tuple[int, int, list[float], int]], categories: list[dict]) -> dict:
    """Assemble a COCO dict. boxes: ``(image_id, category_id, [x, y, w, h], iscrowd)``."""
    annotations = [{"id": i + 1, "image_id": img, "category_id": cat, "bbox": bbox, "area": bbox[2] * bbox[3],
                    "iscrowd": crowd} for i, (img, cat, bbox, crowd) in enumerate(boxes)]
    return {"images": images, "annotations": annotations, "categories": categories}
