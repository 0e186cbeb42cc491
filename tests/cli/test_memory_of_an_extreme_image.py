"""Peak memory of training does not depend on one image's aspect ratio: a set with one 20000 x 1 image trains
within 1.5x the peak resident memory of the same set without it (it used to pad its batch to 20000 px: 11.5 GB
instead of 754 MB for two iterations of detr-tiny). Each training runs in its own process, which reports its own
peak (``ru_maxrss``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

from misuse.corpus import sets

_PEAK = ("import resource, sys; from matchdetr.cli import main; code = main(sys.argv[1:]); "
         "print('peak_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)")


def with_a_strip(data: Path, out: Path) -> Path:
    """A copy of the COCO set ``data`` with one more training image of 20000 x 1 pixels (and a box on it)."""
    shutil.copytree(data, out)
    Image.new("RGB", (20000, 1), (200, 30, 30)).save(out / "train" / "strip.png")
    ann = out / "annotations" / "instances_train.json"
    gt = json.loads(ann.read_text())
    image_id = max(i["id"] for i in gt["images"]) + 1
    gt["images"].append({"id": image_id, "file_name": "strip.png", "width": 20000, "height": 1})
    gt["annotations"].append({"id": max(a["id"] for a in gt["annotations"]) + 1, "image_id": image_id,
                              "category_id": gt["categories"][0]["id"], "bbox": [5000, 0, 4000, 1], "area": 4000,
                              "iscrowd": 0})
    ann.write_text(json.dumps(gt))
    return out


def peak_memory_kb(data: Path, out: Path, env: dict[str, str], *more: str) -> int:
    """Peak resident memory of a 2-iteration training (a whole epoch of 8 images at batch 4) in a new process."""
    args = ["train", "--model", "detr-tiny", "--data", str(data), "--out", str(out), "--iters", "2", "--batch-size",
            "4", "--device", "cpu", "--no-progress", "--no-val", "--set", "data.num_workers=0", *more]
    proc = subprocess.run([sys.executable, "-c", _PEAK, *args], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(next(line.split()[1] for line in proc.stderr.splitlines() if line.startswith("peak_kb")))


def test_one_20000_by_1_image_does_not_raise_the_peak_memory_of_training(tmp_path, cli_env):
    from matchdetr.data.synthetic import generate

    base = tmp_path / "base"
    generate(base, num_train=7, num_val=1, min_side=96, max_side=160, max_objects=4, seed=0, progress=False)
    strip = with_a_strip(base, tmp_path / "strip")
    micro = sets()
    without = peak_memory_kb(base, tmp_path / "a", cli_env, *micro)
    with_strip = peak_memory_kb(strip, tmp_path / "b", cli_env, *micro)
    assert with_strip <= 1.5 * without, (with_strip, without)
