"""Procedural synthetic detection dataset written in COCO format (the project's built-in benchmark).

Scenes hold 1..``max_objects`` shapes from ten classes that differ only in geometry (colour is random), with
log-uniform sizes covering COCO's small / medium / large ranges, rotation, mild aspect distortion, same-class
clusters (the "two cats" case that one-to-one matching finds ambiguous), truncation at the border and
occlusion by later-drawn shapes. Labels are derived from an ownership map painted in drawing order, so every
box is tight on the visible pixels and the segmentation is exactly the visible region.

Layout (mirrors COCO)::

    OUT/train/000000000001.jpg ...          OUT/annotations/instances_train.json
    OUT/val/000000000001.jpg ...            OUT/annotations/instances_val.json

Determinism: each image draws from its own ``SeedSequence((seed, split, index))`` stream, JSON is written with
fixed key order and formatting and JPEGs with fixed settings, so the files are byte-identical for the same
options and seed, whatever the number of ``workers``.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..io.progress import Progress
from .shapes import SHAPES
from .synthetic_scene import render_scene

# COCO-style ids: start at 1 and skip some, so code that assumes ids == 0..K-1 breaks loudly on this data too.
_CATEGORY_IDS = [1, 2, 3, 5, 6, 7, 9, 10, 12, 13]
_SUPER = {"circle": "round", "ring": "round", "semicircle": "round", "star": "symbol", "cross": "symbol",
          "arrow": "symbol"}
CATEGORIES: list[dict] = [{"id": cid, "name": name, "supercategory": _SUPER.get(name, "polygon")}
                          for cid, name in zip(_CATEGORY_IDS, SHAPES)]

JPEG_QUALITY = 92
_SPLIT_CODES = {"train": 0, "val": 1}
AREA_RANGES = {"small": (0, 32 ** 2), "medium": (32 ** 2, 96 ** 2), "large": (96 ** 2, math.inf)}  # COCO's


def mask_to_rle(mask: np.ndarray, x0: int, y0: int, h: int, w: int) -> dict:
    """Uncompressed COCO RLE of a crop ``mask`` ``(mh, mw)`` placed at (x0, y0) in an ``(h, w)`` image.
    COCO counts alternate 0-runs and 1-runs over the image flattened column-major, starting with zeros."""
    full = np.zeros((h, w), dtype=bool)
    full[y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]] = mask
    flat = full.ravel(order="F")
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate([[0], edges, [flat.size]]))
    counts = ([0] if flat[0] else []) + counts.tolist()
    return {"size": [h, w], "counts": counts}


def _make_image(task: tuple) -> dict:
    """Worker: render and write image ``index`` of ``split``; returns its COCO image entry (without id) and
    annotations (without ids). Top-level so multiprocessing can pickle it."""
    out_dir, split, index, seed, min_side, max_side, max_objects = task
    rng = np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_CODES[split], index]))
    h, w = (int(v) for v in rng.integers(min_side, max_side + 1, size=2))
    img, objects = render_scene(rng, h, w, max_objects)
    file_name = f"{index + 1:012d}.jpg"
    # fixed quality/subsampling and no metadata: the bytes depend only on the pixels
    Image.fromarray(img).save(Path(out_dir) / split / file_name, quality=JPEG_QUALITY, subsampling=2)
    anns = []
    for obj in objects:
        mask, (x0, y0) = obj["mask"], obj["offset"]
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        x, y = x0 + cols[0], y0 + rows[0]
        bbox = [float(x), float(y), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]
        anns.append({"category_id": CATEGORIES[obj["label"]]["id"], "bbox": bbox, "area": float(mask.sum()),
                     "iscrowd": 0, "segmentation": mask_to_rle(mask, x0, y0, h, w)})
    return {"image": {"file_name": file_name, "width": w, "height": h}, "annotations": anns}


def _validate(num_train: int, num_val: int, min_side: int, max_side: int, max_objects: int, seed: int,
              workers: int) -> None:
    checks = [
        (num_train >= 0 and num_val >= 0, f"num_train and num_val must be >= 0, got {num_train} and {num_val}"),
        (min_side >= 32, f"min_side must be >= 32 pixels, got {min_side}"),
        (min_side <= max_side, f"min_side ({min_side}) must be <= max_side ({max_side})"),
        (max_objects >= 1, f"max_objects must be >= 1, got {max_objects}"),
        (seed >= 0, f"seed must be >= 0, got {seed}"),
        (workers >= 0, f"workers must be >= 0, got {workers}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def _write_split(out: Path, split: str, num: int, options: dict, workers: int, progress: bool) -> dict:
    """Render one split and write its annotation file; returns the split's summary counts."""
    (out / split).mkdir(parents=True, exist_ok=True)
    o = options
    tasks = [(str(out), split, i, o["seed"], o["min_side"], o["max_side"], o["max_objects"])
             for i in range(num)]
    images, annotations = [], []
    # a bar on a terminal, plain lines in a log file (tqdm's carriage returns would fill it)
    bar = Progress(num, f"synth {split}", "images", enabled=progress)
    pool = multiprocessing.Pool(workers) if workers > 0 else None
    try:
        results = pool.imap(_make_image, tasks, chunksize=8) if pool else map(_make_image, tasks)
        # imap yields in task order, so ids never depend on which worker finished first
        for image_id, result in enumerate(results, start=1):
            images.append({"id": image_id, **result["image"]})
            for ann in result["annotations"]:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})
            bar.update()
    finally:
        bar.close()
        if pool:
            pool.close()
            pool.join()
    info = {"description": "matchdetr procedural shapes benchmark", "version": "1.0", "split": split,
            **options}  # no date: it would break byte-identical regeneration
    coco = {"info": info, "images": images, "annotations": annotations, "categories": CATEGORIES}
    # dumps (C encoder, ~10x faster than dump's streaming one); fixed separators and insertion key order
    (out / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco, separators=(",", ":")),
                                                                encoding="utf-8")
    return summarize(coco)


def summarize(coco: dict) -> dict:
    """Counts of images / annotations, per category name and per COCO area range for one COCO dict."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    per_cat = {c["name"]: 0 for c in coco["categories"]}
    ranges = {k: 0 for k in AREA_RANGES}
    for ann in coco["annotations"]:
        per_cat[names[ann["category_id"]]] += 1
        ranges[next(k for k, (lo, hi) in AREA_RANGES.items() if lo <= ann["area"] < hi)] += 1
    return {"images": len(coco["images"]), "annotations": len(coco["annotations"]), "per_category": per_cat,
            "area_ranges": ranges}


def generate(out_dir: str | os.PathLike, *, num_train: int = 2000, num_val: int = 250,
             min_side: int = 160, max_side: int = 320, max_objects: int = 20, seed: int = 0,
             workers: int = 0, progress: bool = True) -> dict:
    """Write the synthetic dataset under ``out_dir`` (layout in the module docstring).

    Args:
        num_train, num_val: images per split.
        min_side, max_side: each image side is drawn uniformly from [min_side, max_side] pixels.
        max_objects: most shapes drawn per image (labelled ones can be fewer after occlusion).
        seed: the same seed and options give byte-identical files.
        workers: processes rendering images (0 = in this process); never changes the output.
        progress: show a tqdm bar per split.
    Returns:
        ``{"out_dir", "splits": {split: {"images", "annotations", "per_category", "area_ranges"}},
        "elapsed_s"}``.
    """
    _validate(num_train, num_val, min_side, max_side, max_objects, seed, workers)
    start = time.perf_counter()
    out = Path(out_dir)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    options = {"seed": seed, "min_side": min_side, "max_side": max_side, "max_objects": max_objects}
    splits = {split: _write_split(out, split, num, options, workers, progress)
              for split, num in (("train", num_train), ("val", num_val))}
    return {"out_dir": str(out), "splits": splits, "elapsed_s": time.perf_counter() - start}
