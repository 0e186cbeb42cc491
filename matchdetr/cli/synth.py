"""``matchdetr synth``: the built-in synthetic dataset, in COCO, YOLO or VOC layout."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from ..config.tree import ConfigError
from .errors import int_at_least, nonneg_int, positive_int
from .paths import output_dir


def add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write the built-in synthetic dataset (COCO, YOLO or VOC layout)",
                       description="Generate the procedural shapes dataset into OUT_DIR as a COCO folder or, with "
                                   "--format, as a YOLO or Pascal VOC folder; the same images and boxes in each.")
    p.add_argument("out_dir", type=output_dir(), help="folder to write the dataset into")
    p.add_argument("--train", type=nonneg_int, default=2000, help="training images")
    p.add_argument("--val", type=nonneg_int, default=250, help="validation images")
    p.add_argument("--min-side", type=int_at_least(32), default=160, help="shortest image side in pixels")
    p.add_argument("--max-side", type=int_at_least(32), default=320, help="longest image side in pixels")
    p.add_argument("--max-objects", type=positive_int, default=20, help="most objects in one image")
    p.add_argument("--seed", type=nonneg_int, default=0, help="the dataset is a pure function of the seed")
    p.add_argument("--workers", type=nonneg_int, default=0, help="processes (output is identical for any value)")
    p.add_argument("--format", choices=("coco", "yolo", "voc"), default="coco",
                   help="dataset layout: coco, yolo (images/ + labels/ + data.yaml) or voc (Pascal VOC XML)")
    p.set_defaults(func=cmd_synth)


def cmd_synth(a: argparse.Namespace) -> int:
    from ..data.synthetic import generate
    from ..io.out_paths import output_dir

    if a.min_side > a.max_side:
        raise ConfigError(f"--min-side {a.min_side} is larger than --max-side {a.max_side}")
    output_dir(a.out_dir, "OUT_DIR")
    fmt = getattr(a, "format", "coco")
    target = Path(a.out_dir) / ".coco" if fmt != "coco" else Path(a.out_dir)
    summary = generate(target, num_train=a.train, num_val=a.val, min_side=a.min_side, max_side=a.max_side,
                       max_objects=a.max_objects, seed=a.seed, workers=a.workers)
    if fmt != "coco":  # the same images and boxes, written in the other layout
        from ..data.convert import convert_dataset

        convert_dataset(target, fmt, a.out_dir)
        shutil.rmtree(target)
    print(json.dumps(summary, indent=2))
    return 0
