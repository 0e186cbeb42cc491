"""One answer per image: an image's detections from `eval` and `Model.predict` do not depend on the batch size or
on the images beside it (each image is padded to its own canvas; only images of one canvas share a batch)."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest
import torch
from conftest import MICRO

import matchdetr
from matchdetr.cli import main

SETS = {k: v for k, v in (s.split("=", 1) for s in MICRO + ["data.num_workers=0"])}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, synth_dir):
    torch.manual_seed(0)
    names = [c["name"] for c in json.loads((synth_dir / "annotations" / "instances_val.json").read_text())["categories"]]
    model = matchdetr.build("dino-tiny", class_names=names, **SETS)  # multi-scale: GroupNorm, extra levels
    path = tmp_path_factory.mktemp("ck") / "model.safetensors"
    model.save(path)
    return path


def _per_image(results: list[dict]) -> dict[int, np.ndarray]:
    rows = defaultdict(list)
    for r in results:
        rows[r["image_id"]].append([r["category_id"], r["score"], *r["bbox"]])
    return {k: np.array(sorted(v, key=lambda x: (-x[1], x[0]))) for k, v in rows.items()}


def test_eval_gives_each_image_the_same_detections_at_batch_1_and_8(checkpoint, synth_dir, tmp_path, capsys):
    per_batch = {}
    for bs in (1, 8):
        out = tmp_path / f"b{bs}"
        assert main(["eval", "--checkpoint", str(checkpoint), "--data", str(synth_dir), "--batch-size", str(bs),
                     "--workers", "0", "--device", "cpu", "--out", str(out)]) == 0, capsys.readouterr().err
        per_batch[bs] = _per_image(json.loads((out / "results.json").read_text()))
    one, eight = per_batch[1], per_batch[8]
    assert one.keys() == eight.keys() and len(one) == 8
    for image_id in one:
        a, b = one[image_id], eight[image_id]
        assert a.shape == b.shape
        np.testing.assert_allclose(a[:, 1], b[:, 1], atol=2e-5)  # scores (written to 5 decimals)
        np.testing.assert_allclose(a[:, 2:], b[:, 2:], atol=0.02)  # boxes (pixels, written to 2 decimals)
    m1 = json.loads((tmp_path / "b1" / "metrics.json").read_text())["metrics"]
    m8 = json.loads((tmp_path / "b8" / "metrics.json").read_text())["metrics"]
    assert m1 == pytest.approx(m8, abs=1e-6, nan_ok=True)


def test_predict_gives_an_image_the_same_detections_alone_and_in_a_list(checkpoint, synth_dir):
    model = matchdetr.load(checkpoint)
    files = sorted((synth_dir / "val").iterdir())
    together = model.predict(files, threshold=0.0, batch_size=8)
    for f, det in zip(files, together):
        (alone,) = model.predict([f], threshold=0.0)
        torch.testing.assert_close(alone["scores"], det["scores"], atol=1e-5, rtol=0)
        torch.testing.assert_close(alone["boxes"], det["boxes"], atol=1e-3, rtol=0)
        assert torch.equal(alone["labels"], det["labels"])
