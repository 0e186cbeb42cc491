"""The found / named error breakdown (analysis/errors.py) against a brute-force count, and its CLI."""

from __future__ import annotations

import json
import random

import pytest

from matchdetr.analysis.errors import error_breakdown


def _iou(a: list[float], b: list[float]) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    w, h = max(0.0, min(ax1, bx1) - max(a[0], b[0])), max(0.0, min(ay1, by1) - max(a[1], b[1]))
    return w * h / (a[2] * a[3] + b[2] * b[3] - w * h)


def _brute(results: list[dict], gt: dict, iou: float, per_image: int) -> dict[str, tuple[int, int, int]]:
    ranges = {"all": (0, 1e18), "small": (0, 1024), "medium": (1024, 9216), "large": (9216, 1e18)}
    out = {k: [0, 0, 0] for k in ranges}
    for ann in gt["annotations"]:
        if ann.get("iscrowd", 0):
            continue
        dets = sorted([d for d in results if d["image_id"] == ann["image_id"]], key=lambda d: -d["score"])[:per_image]
        hits = [d for d in dets if _iou(ann["bbox"], d["bbox"]) >= iou]
        found, named = bool(hits), bool(hits) and hits[0]["category_id"] == ann["category_id"]
        for k, (lo, hi) in ranges.items():
            if lo <= ann["area"] < hi:
                out[k][0] += 1
                out[k][1] += found
                out[k][2] += named
    return {k: tuple(v) for k, v in out.items()}


def _random_case(seed: int) -> tuple[list[dict], dict]:
    rng = random.Random(seed)
    images = [{"id": i, "width": 200, "height": 200} for i in range(1, 6)]
    anns, results = [], []
    for img in images:
        for _ in range(rng.randint(0, 5)):
            w, h = rng.uniform(5, 150), rng.uniform(5, 150)
            box = [rng.uniform(0, 200 - w), rng.uniform(0, 200 - h), w, h]
            anns.append({"id": len(anns) + 1, "image_id": img["id"], "category_id": rng.choice([1, 3, 7]), "bbox": box,
                         "area": w * h, "iscrowd": int(rng.random() < 0.1)})
            for _ in range(rng.randint(0, 3)):  # jittered copies of the box, some of another class
                j = [v + rng.uniform(-8, 8) for v in box[:2]] + [max(1.0, v * rng.uniform(0.7, 1.3)) for v in box[2:]]
                results.append({"image_id": img["id"], "category_id": rng.choice([1, 3, 7]), "bbox": j,
                                "score": rng.random()})
        for _ in range(rng.randint(0, 4)):  # background detections
            results.append({"image_id": img["id"], "category_id": rng.choice([1, 3, 7]),
                            "bbox": [rng.uniform(0, 150), rng.uniform(0, 150), rng.uniform(2, 50), rng.uniform(2, 50)],
                            "score": rng.random()})
    return results, {"images": images, "annotations": anns, "categories": [{"id": c} for c in (1, 3, 7)]}


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("per_image", [2, 100])
def test_breakdown_equals_brute_force(seed: int, per_image: int) -> None:
    results, gt = _random_case(seed)
    got = error_breakdown(results, gt, iou=0.5, per_image=per_image)
    want = _brute(results, gt, 0.5, per_image)
    for row in got.rows:
        n, f, m = want[row.area]
        assert row.num_gt == n
        assert row.found == pytest.approx(100.0 * f / max(n, 1))
        assert row.named == pytest.approx(100.0 * m / max(f, 1))
    assert got.chance == pytest.approx(100 / 3)


def test_found_but_misnamed_and_not_found() -> None:
    gt = {"images": [{"id": 1}], "categories": [{"id": 1}, {"id": 2}],
          "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50], "area": 2500.0},
                          {"image_id": 1, "category_id": 2, "bbox": [100, 100, 20, 20], "area": 400.0}]}
    results = [{"image_id": 1, "category_id": 2, "bbox": [0, 0, 50, 48], "score": 0.9},   # found, wrong class wins
               {"image_id": 1, "category_id": 1, "bbox": [1, 0, 50, 50], "score": 0.8}]
    rows = {r.area: r for r in error_breakdown(results, gt).rows}
    assert (rows["all"].num_gt, rows["all"].found, rows["all"].named) == (2, 50.0, 0.0)
    assert (rows["medium"].found, rows["small"].found) == (100.0, 0.0)
    with pytest.raises(ValueError, match="iou"):
        error_breakdown(results, gt, iou=0.0)


def test_cli_writes_the_breakdown(synth_dir, tmp_path, capsys) -> None:
    from conftest import MICRO

    from matchdetr.cli import main

    run = tmp_path / "run"
    args = ["train", "--model", "deformable-detr-tiny", "--data", str(synth_dir), "--out", str(run), "--iters", "1",
            "--batch-size", "2", "--device", "cpu", "--no-progress", "--no-val"]
    assert main(args + [x for o in MICRO + ["data.num_workers=0"] for x in ("--set", o)]) == 0
    assert main(["analyze", "errors", "--checkpoint", str(run), "--data", str(synth_dir), "--workers", "0",
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "| all |" in printed and "named % of found" in printed
    saved = json.loads((run / "errors" / "errors.json").read_text())
    assert main(["analyze", "errors", "--checkpoint", str(run), "--data", str(synth_dir), "--iou", "1.5"]) == 2
    assert "--iou must be in (0, 1]" in capsys.readouterr().err
    assert [r["area"] for r in saved["rows"]] == ["all", "small", "medium", "large"] and saved["rows"][0]["num_gt"] > 0
