"""The command line: help texts, one-line errors, eval of a results file (vs pycocotools), predict, models."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import MICRO

from matchdetr.cli import main

COMMANDS = ["synth", "train", "eval", "predict", "models", "demo"]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert "usage: matchdetr " + cmd in capsys.readouterr().out


def test_bad_override_is_one_line(synth_dir, tmp_path, capsys):
    code = main(["train", "--model", "detr-tiny", "--data", str(synth_dir), "--out", str(tmp_path), "--iters", "1",
                 "--set", "model.transformer.num_queries=many"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert err.startswith("matchdetr: error:") and "model.transformer.num_queries" in err


@pytest.mark.parametrize("args,needle", [
    (["train", "--model", "no-such", "--data", "X", "--out", "Y"], "unknown preset"),
    (["train", "--model", "detr-tiny", "--data", "/nonexistent", "--out", "Y"], "/nonexistent"),
    (["eval", "--checkpoint", "/nonexistent.safetensors", "--data", "/nonexistent"], "/nonexistent"),
])
def test_user_errors_are_one_line(args, needle, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("matchdetr: error:") and needle in err and "\n" not in err


def _random_results(gt, seed, n_per_image=30):
    rng = np.random.default_rng(seed)
    cats = [c["id"] for c in gt["categories"]]
    out = []
    for img in gt["images"]:
        for _ in range(n_per_image):
            w, h = rng.uniform(2, img["width"] / 2), rng.uniform(2, img["height"] / 2)
            x, y = rng.uniform(0, img["width"] - w), rng.uniform(0, img["height"] - h)
            out.append({"image_id": img["id"], "category_id": int(rng.choice(cats)), "bbox": [x, y, w, h], "score": float(rng.random())})
    # near-GT detections too, so AP is far from zero
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        j = rng.normal(0, 0.1 * np.sqrt(w * h), 4)
        out.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": [x + j[0], y + j[1], max(w + j[2], 1), max(h + j[3], 1)], "score": float(rng.uniform(0.3, 1))})
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_eval_predictions_agrees_with_pycocotools(synth_dir, tmp_path, capsys, seed):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ann = synth_dir / "annotations" / "instances_val.json"
    results = _random_results(json.loads(ann.read_text()), seed)
    res_path = tmp_path / "results.json"
    res_path.write_text(json.dumps(results))
    assert main(["eval", "--predictions", str(res_path), "--data", str(synth_dir), "--out", str(tmp_path)]) == 0
    ours = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    gt = COCO(str(ann))
    ev = COCOeval(gt, gt.loadRes(str(res_path)), "bbox")
    ev.evaluate(), ev.accumulate(), ev.summarize()
    names = ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    for name, ref in zip(names, ev.stats[:6]):
        if ref >= 0:
            assert abs(ours[name] - 100 * ref) <= 0.05, (name, ours[name], 100 * ref)
    assert ours["AP"] > 1.0
    assert "AP50" in capsys.readouterr().out


def test_train_predict_models_end_to_end(synth_dir, tmp_path, cli_env):
    run = tmp_path / "run"
    sets = sum((["--set", s] for s in MICRO + ["data.num_workers=0"]), [])
    subprocess.run([sys.executable, "-m", "matchdetr", "train", "--model", "detr-tiny", "--data", str(synth_dir),
                    "--out", str(run), "--iters", "2", "--batch-size", "2", "--no-progress", *sets],
                   check=True, env=cli_env, capture_output=True, timeout=300)
    out = tmp_path / "pred"
    code = main(["predict", str(synth_dir / "val"), "--checkpoint", str(run), "--out", str(out), "--threshold", "0.0", "--device", "cpu"])
    assert code == 0
    records = json.loads((out / "detections.json").read_text())
    assert len(records) == 8 and all((out / f"{r['file'].rsplit('/', 1)[1].rsplit('.', 1)[0]}.png").exists() for r in records)
    d = records[0]["detections"][0]
    assert set(d) == {"box", "score", "label", "name", "bbox_xyxy", "category_id"}
    assert main(["eval", "--checkpoint", str(run), "--data", str(synth_dir), "--device", "cpu", "--workers", "0"]) == 0


def test_models_lists_presets(capsys):
    from matchdetr import presets

    assert main(["models", "--no-params"]) == 0
    assert capsys.readouterr().out.split() == presets.names()
    assert main(["models", "--num-classes", "91", "--presets", "detr-r50,detr-tiny"]) == 0
    out = capsys.readouterr().out
    assert "detr-r50" in out and "41.58M" in out and "detr-tiny" in out
