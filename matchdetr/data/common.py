"""What every annotation reader (COCO, YOLO, VOC, label matching) shares: the error and warning types, the
split's paths, the aggregated problem report, and the helpers that turn a YOLO or VOC folder into a COCO dict
(image headers, EXIF frames, dict assembly)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..io.decode import IMAGE_SUFFIXES  # noqa: F401  (the one extension set, for the YOLO / VOC readers)
from .images import ImageLoadError, exif_transform_boxes

_SHOWN_IDS = 5  # ids quoted in an aggregated warning
_INVERSE_ORIENTATION = {6: 8, 8: 6}  # the others (2, 3, 4, 5, 7) are their own inverse


class DatasetError(ValueError):
    """Unusable dataset; the message is one line naming the file and the problem."""


class DatasetWarning(UserWarning):
    """Recoverable data problem (dropped annotation, missing/undecodable image); names the file or ids."""


@dataclass
class SplitPaths:
    images: Path  # folder the JSON file_names are relative to
    annotations: Path  # COCO instances JSON (yolo: data.yaml / classes.txt / labels folder; voc: ImageSets list)
    format: str = "coco"  # coco | yolo | voc (data/formats.py converts the others to a COCO dict)


class Problems:
    """Collects ids per problem kind and reports each kind once, quoting a few ids and the count."""

    def __init__(self, path: Path) -> None:
        self.path, self.kinds = path, {}

    def add(self, kind: str, ident: Any) -> None:
        self.kinds.setdefault(kind, []).append(ident)

    def warn(self) -> None:
        for kind, ids in self.kinds.items():
            shown = ", ".join(str(i) for i in ids[:_SHOWN_IDS]) + (", ..." if len(ids) > _SHOWN_IDS else "")
            warnings.warn(f"{self.path}: {len(ids)} {kind} ({shown})", DatasetWarning, stacklevel=3)


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


def coco_dict(images: list[dict], boxes: list[tuple[int, int, list[float], int]], categories: list[dict],
              segmentations: list[list[list[float]] | None] | None = None) -> dict:
    """Assemble a COCO dict. boxes: ``(image_id, category_id, [x, y, w, h], iscrowd)``; segmentations: beside
    them, COCO polygons (pixels) or None. ``area`` is the polygons' where there are some (COCO's is the mask
    area, which the small / medium / large ranges of evaluation use), else the box's."""
    annotations = [{"id": i + 1, "image_id": img, "category_id": cat, "bbox": bbox, "area": bbox[2] * bbox[3],
                    "iscrowd": crowd} for i, (img, cat, bbox, crowd) in enumerate(boxes)]
    for ann, polygons in zip(annotations, segmentations or []):
        if polygons is not None:
            ann["segmentation"], ann["area"] = polygons, sum(polygon_area(p) for p in polygons)
    return {"images": images, "annotations": annotations, "categories": categories}


def polygon_area(xy: list[float]) -> float:
    """Area of the polygon ``[x1, y1, x2, y2, ...]`` (shoelace formula; either winding)."""
    xs, ys = xy[0::2], xy[1::2]
    return abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs)))) / 2
