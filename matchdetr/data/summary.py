"""What a split holds, in one line: ``train`` and ``eval`` print it for each split they read, so a wrong folder,
a missing labels folder or a class list that does not match shows before any training.

    train: YOLO, 60 images (48 labelled, 12 background), 3 classes (3 with instances), 171 instances; /d/images/train

Counts are those of the annotations as training and evaluation read them (a YOLO or VOC split converted as
for training; crowd regions not counted); problems with single items are reported by that reading itself. A
YOLO split where several images read one label file (``x.jpg`` and ``x.png`` both take ``labels/x.txt``, often
an output written into the dataset) gets a warning naming them.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .common import DatasetWarning, Problems, SplitPaths

if TYPE_CHECKING:  # pragma: no cover
    from ..config import DataConfig

LAYOUTS = {"coco": "COCO", "yolo": "YOLO", "voc": "Pascal VOC"}
_SHOWN = 3  # shared label files quoted in the warning


@dataclass(frozen=True)
class SplitSummary:
    split: str  # train | val | ...
    layout: str  # coco | yolo | voc
    images: int  # images the annotations list (COCO) or the reader found (YOLO, VOC)
    labelled: int  # images with at least one box
    classes: int  # the split's classes (its categories, YOLO names, VOC classes)
    classes_present: int  # of them, those with at least one box
    instances: int  # boxes (crowd regions not counted)
    images_folder: Path

    @property
    def background(self) -> int:
        """Images without any box (negatives)."""
        return self.images - self.labelled

    def line(self) -> str:
        return (f"{self.split}: {LAYOUTS.get(self.layout, self.layout)}, {self.images} images ({self.labelled} "
                f"labelled, {self.background} background), {self.classes} classes ({self.classes_present} with "
                f"instances), {self.instances} instances; {self.images_folder}")


def summarize(data: dict, split: str, layout: str, images_folder: Path) -> SplitSummary:
    """The summary of a COCO dict (a COCO file's, or a YOLO / VOC split read into one): entries that are not
    what COCO asks for are not counted (training reports them), crowd regions neither."""
    image_ids = {img["id"] for img in data["images"] if isinstance(img, dict) and type(img.get("id")) is int}
    boxes = [a for a in data["annotations"] if isinstance(a, dict) and a.get("image_id") in image_ids
             and not a.get("iscrowd", 0)]
    return SplitSummary(split, layout, len(image_ids), len({a["image_id"] for a in boxes}), len(data["categories"]),
                        len({a.get("category_id") for a in boxes}), len(boxes), images_folder)


def scan_split(paths: SplitPaths, split: str) -> SplitSummary:
    """Read the split's annotations as training does and summarise them; image files are not opened (``eval
    --predictions`` needs none). Per-item warnings are left to the read that follows, so each shows once."""
    from .coco_json import read_coco_json
    from .formats import read_foreign

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        data = (read_coco_json(Path(paths.annotations)) if paths.format == "coco"
                else read_foreign(paths, Problems(Path(paths.annotations))))
    return summarize(data, split, paths.format, Path(paths.images))


def shared_labels_warning(paths: SplitPaths) -> str | None:
    """The warning for a YOLO split whose images share label files (module docstring), or None."""
    if paths.format != "yolo":
        return None
    from .yolo import shared_label_files

    shared = shared_label_files(Path(paths.images))
    if not shared:
        return None
    shown = "; ".join(f"{label.name}: {', '.join(i.name for i in images)}"
                      for label, images in list(shared.items())[:_SHOWN])
    more = ", ..." if len(shared) > _SHOWN else ""
    return (f"{paths.images}: {len(shared)} label file(s) are read by several images, each of which takes all their "
            f"boxes ({shown}{more}); an output written into the dataset? Move the extra images out")


def report_splits(data: DataConfig, splits: Sequence[str]) -> None:
    """Print the one-line summary of each split of ``data`` (``train`` / ``val``, as training resolves them),
    with the shared-label-file warning; only on the first process of a torchrun launch."""
    from .splits import resolve_split

    if int(os.environ.get("RANK", "0")) != 0:
        return
    for split in splits:
        paths = resolve_split(data.path, split, getattr(data, f"{split}_images", None),
                              getattr(data, f"{split}_annotations", None))
        report_paths(paths, split)


def report_paths(paths: SplitPaths, split: str) -> None:
    """Print the summary of one split (and warn about shared label files)."""
    print(scan_split(paths, split).line(), flush=True)
    warning = shared_labels_warning(paths)
    if warning is not None:
        warnings.warn(warning, DatasetWarning, stacklevel=2)
