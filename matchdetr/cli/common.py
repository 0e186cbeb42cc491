"""Options several commands share."""

from __future__ import annotations

import argparse
from typing import Sequence

from .paths import dataset_path


DEVICE_HELP = "auto (cuda when available, else cpu) | cpu | cuda | cuda:N | mps"


def add_data_args(p: argparse.ArgumentParser, splits: Sequence[str]) -> None:
    p.add_argument("--data", type=dataset_path,
                   help="dataset folder: SPLIT/ images + annotations/instances_SPLIT.json (COCO's *2017 "
                        "names work too), a YOLO folder or data.yaml, or a Pascal VOC folder")
    for s in splits:
        p.add_argument(f"--{s}-images", type=dataset_path, help=f"{s} image folder (overrides --data)")
        p.add_argument(f"--{s}-ann", type=dataset_path, help=f"{s} annotation JSON (overrides --data)")
