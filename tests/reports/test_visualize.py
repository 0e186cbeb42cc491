"""Plots: each function writes a valid image of the expected size, and survives awkward inputs."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from matchdetr.reports.visualize import class_color, draw_detections, plot_training_curves, save_prediction_grid


def gradient_image(width: int, height: int) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None, None]
    return Image.fromarray(np.broadcast_to((x // 2 + y // 2), (height, width, 3)).astype(np.uint8))


def test_draw_detections_basic():
    image = gradient_image(320, 240)
    before = np.asarray(image).copy()
    boxes = torch.tensor([[20.0, 30.0, 150.0, 200.0], [100.0, 50.0, 300.0, 120.0]])
    out = draw_detections(image, boxes, torch.tensor([0.87, 0.4]), ["person", "car"])
    assert out.mode == "RGB" and out.size == image.size and out is not image
    assert np.array_equal(np.asarray(image), before)  # input untouched
    pixels = np.asarray(out)
    assert tuple(pixels[120, 20]) == class_color("person")  # left edge of the first box
    assert tuple(pixels[100, 300]) == class_color("car")


def test_class_color_is_deterministic():
    assert class_color("person") == class_color("person")
    assert len({class_color(n) for n in ["person", "car", "dog", "cat", "bus", "bike"]}) > 1


def test_draw_detections_zero_detections_and_grayscale():
    image = gradient_image(64, 48).convert("L")
    out = draw_detections(image, np.zeros((0, 4)), np.zeros(0), [])
    assert out.mode == "RGB" and np.array_equal(np.asarray(out), np.asarray(image.convert("RGB")))


def test_draw_detections_outside_tiny_and_max_dets():
    image = gradient_image(12, 9)  # label wider than the image: must be clipped, not crash
    boxes = [[-20, -20, 5, 5], [8, 6, 40, 40], [50, 50, 60, 60], [float("nan"), 0, 3, 3], [6, 2, 1, 7]]
    out = draw_detections(image, boxes, [0.9, 0.8, 0.7, 0.6, 0.5], ["a", "bb", "ccc", "d", "e"])
    assert out.size == (12, 9)
    big = gradient_image(200, 200)
    many = np.array([[i, i, i + 20, i + 20] for i in range(150)], dtype=np.float32)
    names = ["x"] * 150
    capped = draw_detections(big, many, np.linspace(1, 0, 150), names, max_dets=10)
    full = draw_detections(big, many, np.linspace(1, 0, 150), names)
    assert not np.array_equal(np.asarray(capped), np.asarray(full))
    with pytest.raises(ValueError, match="2 boxes, 1 scores"):
        draw_detections(big, many[:2], [0.5], ["x", "y"])


def test_save_prediction_grid(tmp_path):
    sizes = [(320, 240), (200, 300), (640, 480), (100, 80), (50, 50)]
    images = [gradient_image(w, h) for w, h in sizes]
    dets = [{"boxes": torch.tensor([[10.0, 10.0, w * 0.6, h * 0.7]]), "scores": torch.tensor([0.9]),
             "names": ["dog"]} for w, h in sizes]
    dets[3] = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "names": []}  # nothing detected
    gts = [{"boxes": [[5, 5, w * 0.5, h * 0.5], [-10, h - 20, 30, h + 30]], "names": ["dog", "cat"]}
           for w, h in sizes]
    out = tmp_path / "grid" / "preds.png"
    save_prediction_grid(images, dets, out, gts=gts, cols=4)
    grid = Image.open(out)
    assert grid.format == "PNG"
    height = 480  # tallest image, within the 128..512 range
    cell_w = max(round(w * height / h) for w, h in sizes)
    assert grid.size == (4 * cell_w + 5 * 4, 2 * height + 3 * 4)
    with pytest.raises(ValueError, match="5 images but 4 detections"):
        save_prediction_grid(images, dets[:4], out)


def write_jsonl(path, records, tail: str = "") -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)


def train_records(n: int = 200) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"type": "train", "iter": i * 10, "epoch": i // 50, "lr": 1e-4, "loss": 30 * np.exp(-i / 60)
             + float(rng.normal(0, 1)), "loss_ce": 1.0, "loss_bbox": 0.5, "loss_giou": 0.7} for i in range(n)]


def test_training_curves_with_partial_last_line(tmp_path):
    records = train_records()
    records += [{"type": "eval", "iter": it, "AP": ap, "AP50": ap * 1.6, "val_loss": 40 - ap}
                for it, ap in [(500, 3.0), (1000, 9.5), (1500, 14.2)]]  # val_loss drawn on the loss panel
    path = tmp_path / "metrics.jsonl"
    write_jsonl(path, records, tail='{"type": "train", "iter": 2000, "lo')  # run killed mid-write
    out = tmp_path / "curves.png"
    with pytest.warns(UserWarning, match="skipped 1 malformed line"):
        plot_training_curves(path, out)
    image = Image.open(out)
    assert image.format == "PNG" and image.size == (1200, 450)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_training_curves_without_eval(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_jsonl(path, train_records(5))
    out = tmp_path / "curves.png"
    plot_training_curves(path, out)
    assert Image.open(out).size == (1200, 450)


@pytest.mark.parametrize("content", ["", "\n\n", "{not json\n"])
def test_training_curves_empty_file(content, tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(content)
    with pytest.warns(UserWarning) if "{" in content else contextlib.nullcontext():
        with pytest.raises(ValueError, match="metrics.jsonl: no metrics records"):
            plot_training_curves(path, tmp_path / "curves.png")

