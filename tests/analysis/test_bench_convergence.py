"""``matchdetr bench convergence``: curves, table and unstable score for several presets, and resuming."""

from __future__ import annotations

import csv
import json

from conftest import MICRO

from matchdetr.cli import main


def test_convergence_benchmark_writes_everything_and_resumes(synth_dir, tmp_path, capsys):
    out = tmp_path / "bench"
    args = ["bench", "convergence", "--models", "stable-dino-tiny", "--iters", "4", "--eval-every", "2",
            "--batch-size", "8", "--data", str(synth_dir), "--out", str(out), "--unstable-images", "3",
            "--device", "cpu"] + [x for o in MICRO + ["data.num_workers=0"] for x in ("--set", o)]
    assert main(args) == 0
    for name in ("curves.csv", "curves.png", "table.md", "unstable.csv", "unstable.png"):
        assert (out / name).stat().st_size > 0
    rows = list(csv.DictReader(open(out / "curves.csv")))
    assert [(r["preset"], r["iter"]) for r in rows] == [("stable-dino-tiny", "2"), ("stable-dino-tiny", "4")]
    assert "`stable-dino-tiny`" in (out / "table.md").read_text()
    unstable = list(csv.DictReader(open(out / "unstable.csv")))
    assert [r["layer"] for r in unstable if r["preset"] == "stable-dino-tiny"] == ["1", "2"]  # encoder -> dec 1, 1 -> 2
    first = json.loads((out / "stable-dino-tiny" / "bench.json").read_text())
    # the breakdown read from the final evaluation's detections equals predicting the split again
    import torch

    from matchdetr import api
    from matchdetr.analysis.errors import model_error_breakdown
    from matchdetr.data.coco import resolve_split

    model = api.load(out / "stable-dino-tiny", map_location=torch.device("cpu"))
    val = api.eval_split(model, resolve_split(synth_dir, "val"))
    again = model_error_breakdown(model, val, torch.device("cpu"), num_workers=0, progress=False)
    assert first["errors"]["rows"] == [dict(vars(r)) for r in again.rows] and first["errors"]["rows"][0]["num_gt"] > 0

    # A finished model is read back without training; one whose summary is missing resumes from its last
    # checkpoint (here the final one: nothing left to train) and reproduces the same figures.
    mtime = (out / "stable-dino-tiny" / "model.safetensors").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "stable-dino-tiny" / "model.safetensors").stat().st_mtime_ns == mtime
    (out / "stable-dino-tiny" / "bench.json").unlink()
    assert main(args) == 0
    again = json.loads((out / "stable-dino-tiny" / "bench.json").read_text())
    assert again["final"] == first["final"] and again["curve"] == first["curve"]


def test_unknown_model_fails_before_training(tmp_path, capsys):
    assert main(["bench", "convergence", "--models", "detr-tiny,nope", "--out", str(tmp_path)]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
