"""Find a split's images and annotations under a ``--data`` folder (COCO, or YOLO / VOC via ``formats``)."""

from __future__ import annotations

from pathlib import Path

from .common import DatasetError, SplitPaths
from .formats import resolve_foreign_split


def resolve_split(
    data_dir: str | Path | None, split: str, images: str | None = None, annotations: str | None = None
) -> SplitPaths:
    """Find a split: ``DIR/{split}/`` + ``DIR/annotations/instances_{split}.json`` (our generator), or COCO's
    ``DIR/{split}2017/`` + ``instances_{split}2017.json``. Explicit ``images``/``annotations`` win."""
    root = Path(data_dir) if data_dir else None
    if root is not None and not images and not annotations:
        foreign = resolve_foreign_split(root, split)  # YOLO / VOC folders; None for COCO
        if foreign is not None:
            return foreign
    image_dirs = [Path(images)] if images else [root / split, root / f"{split}2017"] if root else []
    ann_files = [Path(annotations)] if annotations else (
        [root / "annotations" / f"instances_{s}.json" for s in (split, f"{split}2017")] if root else []
    )
    if not image_dirs or not ann_files:
        raise DatasetError(f"split '{split}': give a data directory or both an images folder and an annotation file")
    found_dir = next((p for p in image_dirs if p.is_dir()), None)
    found_ann = next((p for p in ann_files if p.is_file()), None)
    if found_dir is None:
        raise DatasetError(f"split '{split}': no image folder; tried {', '.join(map(str, image_dirs))}")
    if found_ann is None:
        raise DatasetError(f"split '{split}': no annotation file; tried {', '.join(map(str, ann_files))}")
    return SplitPaths(found_dir, found_ann)
