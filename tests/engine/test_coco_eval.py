"""COCO scoring: agreement with pycocotools (the reference), input validation, outputs."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import warnings

import numpy as np
import pytest

from matchdetr.engine.coco_eval import (
    METRIC_NAMES,
    EvalInputError,
    evaluate_detections,
    load_coco,
    load_results,
    write_results,
)

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO as RefCOCO  # noqa: E402
from pycocotools.cocoeval import COCOeval as RefCOCOeval  # noqa: E402

CATS = [(1, "person"), (3, "car"), (7, "dog"), (9, "unicorn")]  # non-contiguous; 9 has no GT boxes
SIDES = {"small": (6, 30), "medium": (40, 90), "large": (110, 300)}  # sqrt(area) ranges per COCO size


def make_gt(num_images: int = 30, seed: int = 0) -> dict:
    """GT with boxes of all three area ranges, one crowd box, and a category without boxes."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for img_id in range(1, num_images + 1):
        images.append({"id": img_id, "width": 640, "height": 480, "file_name": f"{img_id}.jpg"})
        for _ in range(int(rng.integers(1, 7))):
            lo, hi = SIDES[rng.choice(list(SIDES))]
            w, h = rng.uniform(lo, hi, size=2)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": int(rng.choice([1, 3, 7])),
                         "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h), "iscrowd": 0})
    anns[0]["iscrowd"] = 1
    return {"images": images, "annotations": anns, "categories": [{"id": i, "name": n} for i, n in CATS]}


def random_dets(gt: dict, rng: np.random.Generator) -> list[dict]:
    """Uniform boxes, up to 150 per image so the maxDets=100 cut is exercised."""
    dets = []
    for img in gt["images"]:
        for _ in range(int(rng.integers(0, 150))):
            w, h = rng.uniform(5, 300, size=2)
            dets.append({"image_id": img["id"], "category_id": int(rng.choice([1, 3, 7, 9])),
                         "bbox": [float(rng.uniform(0, 600)), float(rng.uniform(0, 450)), float(w), float(h)],
                         "score": float(rng.random())})
    return dets


def noisy_dets(gt: dict, rng: np.random.Generator) -> list[dict]:
    """Jittered GT boxes (some missed, some with the wrong class) plus false positives."""
    dets = []
    for a in gt["annotations"]:
        if rng.random() < 0.15:
            continue
        x, y, w, h = a["bbox"]
        jitter = rng.normal(0, 0.08, size=4) * [w, h, w, h]
        cat = a["category_id"] if rng.random() > 0.1 else int(rng.choice([1, 3, 7]))
        dets.append({"image_id": a["image_id"], "category_id": cat,
                     "bbox": [float(x + jitter[0]), float(y + jitter[1]), float(max(1.0, w + jitter[2])),
                              float(max(1.0, h + jitter[3]))], "score": float(rng.uniform(0.3, 1.0))})
    return dets + random_dets(gt, rng)[::10]


def perfect_dets(gt: dict, rng: np.random.Generator) -> list[dict]:
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]),
             "score": float(rng.uniform(0.5, 1.0))} for a in gt["annotations"] if not a["iscrowd"]]


def reference(gt_path, dets_path) -> RefCOCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        ref_gt = RefCOCO(str(gt_path))
        ev = RefCOCOeval(ref_gt, ref_gt.loadRes(str(dets_path)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


@pytest.fixture
def gt_path(tmp_path):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(make_gt()))
    return path


@pytest.mark.parametrize("make_dets", [random_dets, noisy_dets, perfect_dets])
def test_matches_pycocotools(make_dets, gt_path, tmp_path, capsys):
    dets = make_dets(json.loads(gt_path.read_text()), np.random.default_rng(1))
    dets_path = tmp_path / "dets.json"
    dets_path.write_text(json.dumps(dets))
    ours = evaluate_detections(gt_path, dets_path)
    assert capsys.readouterr().out == ""  # the library's chatter is silenced
    ref = reference(gt_path, dets_path)
    diffs = []
    for name, value in zip(METRIC_NAMES, ref.stats):
        assert value >= 0, "the GT covers every area range, so no metric is undefined"
        diffs.append(abs(ours.metrics[name] - 100 * value))
    print(f"{make_dets.__name__}: max |ours - pycocotools| = {max(diffs):.2e} AP points")
    assert max(diffs) < 0.05, dict(zip(METRIC_NAMES, diffs))

    precision = ref.eval["precision"]  # [T, R, K, A, M]
    assert [c["category_id"] for c in ours.per_class] == [1, 3, 7, 9]
    for k, row in enumerate(ours.per_class):
        p = precision[:, :, k, 0, -1]
        if (p > -1).any():
            assert row["AP"] == pytest.approx(100 * p[p > -1].mean(), abs=0.05)
            assert row["AP50"] == pytest.approx(100 * p[0][p[0] > -1].mean(), abs=0.05)
        else:
            assert math.isnan(row["AP"]) and math.isnan(row["AP50"])
    if make_dets is perfect_dets:
        # AR1/AR10 stay below 100: an image may hold more boxes of a class than maxDets allows.
        exact = [n for n in METRIC_NAMES if n not in ("AR1", "AR10")]
        assert all(ours.metrics[n] == pytest.approx(100.0) for n in exact)


def test_per_class_counts_and_table(gt_path):
    gt = json.loads(gt_path.read_text())
    dets = perfect_dets(gt, np.random.default_rng(0))
    result = evaluate_detections(gt, dets)
    rows = {r["category_id"]: r for r in result.per_class}
    for cat in (1, 3, 7):
        non_crowd = [a for a in gt["annotations"] if a["category_id"] == cat and not a["iscrowd"]]
        assert rows[cat]["num_gt"] == rows[cat]["num_dets"] == len(non_crowd)
    assert rows[9]["num_gt"] == 0 and math.isnan(rows[9]["AP"])
    table = result.table()
    assert "AP50" in table and "AR100" in table
    unicorn = next(line for line in table.splitlines() if line.startswith("unicorn"))
    assert unicorn.split()[2:4] == ["-", "-"]


def test_undefined_metrics_are_nan(tmp_path):
    gt = make_gt()
    gt["annotations"] = [a for a in gt["annotations"] if a["area"] < 96**2]  # no large boxes left
    result = evaluate_detections(gt, perfect_dets(gt, np.random.default_rng(0)))
    assert math.isnan(result.metrics["APl"]) and math.isnan(result.metrics["ARl"])
    assert result.metrics["AP"] == pytest.approx(100.0)
    assert result.to_json()["metrics"]["APl"] is None


def test_empty_results(gt_path, tmp_path):
    dets_path = tmp_path / "dets.json"
    dets_path.write_text("[]")
    with pytest.warns(UserWarning, match="no detections"):
        result = evaluate_detections(gt_path, dets_path)
    assert all(v == 0.0 for v in result.metrics.values())
    assert [r["AP"] for r in result.per_class[:3]] == [0.0, 0.0, 0.0]
    assert "-" in result.table()


def test_degenerate_boxes_dropped_with_warning(gt_path):
    gt = load_coco(gt_path)
    dets = [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 0, 5], "score": 0.5},
            {"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, -2], "score": 0.5},
            {"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.5}]
    with pytest.warns(UserWarning) as caught:
        clean = load_results(dets, gt)
    assert len(clean) == 1
    text = str(caught[0].message)  # in the user's terms: whose detections, what is wrong, what happens to them
    assert text.startswith("2 of the model's 3 detections have a box of zero width or height") and "<" not in text
    assert "left out of the box AP" in text and "match no object" in text


def test_results_with_tensor_values(gt_path):
    torch = pytest.importorskip("torch")
    dets = [{"image_id": torch.tensor(2), "category_id": np.int64(3), "bbox": torch.tensor([1.0, 2.0, 3.0, 4.0]),
             "score": torch.tensor(0.5)}]
    assert load_results(dets, load_coco(gt_path)) == [
        {"image_id": 2, "category_id": 3, "bbox": [1.0, 2.0, 3.0, 4.0], "score": 0.5}]


GOOD = {"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}


@pytest.mark.parametrize("bad, match", [
    ("not an object", "expected an object"),
    ({"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}, r"missing key\(s\) \['score'\]"),
    ({**GOOD, "bbox": [1, 2, 3]}, "bbox must be 4 numbers"),
    ({**GOOD, "bbox": [1, 2, "3", 4]}, "bbox must be 4 numbers"),
    ({**GOOD, "score": "high"}, "score must be a number"),
    ({**GOOD, "score": float("nan")}, "non-finite"),
    ({**GOOD, "bbox": [1, 2, float("inf"), 4]}, "non-finite"),
    ({**GOOD, "image_id": 999}, "image_id 999 is not an image of the GT"),
    ({**GOOD, "category_id": 2}, "category_id 2 is not a GT category"),
])
def test_result_validation_errors(bad, match, gt_path, tmp_path):
    dets_path = tmp_path / "dets.json"
    dets_path.write_text(json.dumps([GOOD, bad]))  # json writes NaN/Infinity, as buggy exporters do
    with pytest.raises(EvalInputError, match=match) as info:
        evaluate_detections(gt_path, dets_path)
    message = str(info.value)
    assert "\n" not in message and str(dets_path) in message and "entry 1" in message


@pytest.mark.parametrize("content, match", [
    (None, "file not found"),
    ("[{", "invalid JSON"),
    ('{"a": 1}', "expected a JSON list"),
])
def test_results_file_errors(content, match, gt_path, tmp_path):
    dets_path = tmp_path / "dets.json"
    if content is not None:
        dets_path.write_text(content)
    with pytest.raises(EvalInputError, match=match) as info:
        evaluate_detections(gt_path, dets_path)
    assert "\n" not in str(info.value) and str(dets_path) in str(info.value)


@pytest.mark.parametrize("content, match", [
    (None, "file not found"),
    ("{", "invalid JSON"),
    ('{"images": [], "annotations": []}', "'categories'"),
    ('{"images": [{"id": 1}], "annotations": [{"id": 1}], "categories": []}', r"annotations\[0\]"),
])
def test_gt_errors(content, match, tmp_path):
    path = tmp_path / "gt.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(EvalInputError, match=match) as info:
        load_coco(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_metrics_json_and_inputs_untouched(tmp_path):
    gt = make_gt()
    gt_before = copy.deepcopy(gt)
    dets = noisy_dets(gt, np.random.default_rng(2))
    dets_path = tmp_path / "dets.json"
    write_results(dets, dets_path)
    dets_bytes = dets_path.read_bytes()
    result = evaluate_detections(gt, dets_path, out_dir=tmp_path / "eval")
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(saved) == {"metrics", "per_class"}
    assert saved["metrics"] == pytest.approx(result.metrics)
    assert [c["category_id"] for c in saved["per_class"]] == [1, 3, 7, 9]
    assert saved["per_class"][3]["AP"] is None and saved["per_class"][0]["num_gt"] > 0
    assert dets_path.read_bytes() == dets_bytes  # results file is not rewritten
    assert gt == gt_before  # COCOeval's bookkeeping keys do not leak into the caller's dict


def test_write_results_plain_and_atomic(tmp_path):
    dets = [{"image_id": np.int64(1), "category_id": np.int32(3), "bbox": np.array([1.5, 2, 3, 4]),
             "score": np.float32(0.25)}]
    path = tmp_path / "sub" / "res.json"
    write_results(dets, path)
    assert json.loads(path.read_text()) == [{"image_id": 1, "category_id": 3, "bbox": [1.5, 2.0, 3.0, 4.0],
                                             "score": 0.25}]
    assert [p.name for p in path.parent.iterdir()] == ["res.json"]  # no temp file left behind
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = evaluate_detections(make_gt(), path)
    assert result.per_class[1]["num_dets"] == 1
