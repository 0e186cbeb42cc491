"""COCO segm scoring: agreement with pycocotools' COCOeval(iouType='segm'), the combined bbox + segm result,
results validation, and predicted masks as RLE results entries."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math

import numpy as np
import pytest
import torch

from matchdetr.engine.coco_eval import METRIC_NAMES, EvalInputError, evaluate_detections, write_results
from matchdetr.engine.coco_masks import mask_results, masks_to_rle
from matchdetr.inference.predict_io import to_coco_results

pycocotools = pytest.importorskip("pycocotools")
from pycocotools import mask as ref_mask  # noqa: E402
from pycocotools.coco import COCO as RefCOCO  # noqa: E402
from pycocotools.cocoeval import COCOeval as RefCOCOeval  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.*")  # its decode under numpy 2
CATS = [(1, "person"), (3, "car"), (7, "dog"), (9, "unicorn")]  # non-contiguous; 9 has no GT
H, W = 120, 160
SIDES = {"small": (4, 24), "medium": (36, 80), "large": (100, 118)}  # sqrt(area) ranges per COCO size


def rle(mask: np.ndarray) -> dict:
    encoded = ref_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": encoded["size"], "counts": encoded["counts"].decode("ascii")}


def blob(rng: np.random.Generator, side: tuple[int, int]) -> np.ndarray:
    """An ellipse of about ``side`` px (per axis) somewhere in the image, possibly cut by the border."""
    a, b = rng.uniform(*side, size=2) / 2
    cx, cy = rng.uniform(0, W), rng.uniform(0, H)
    ys, xs = np.mgrid[:H, :W]
    return ((xs + 0.5 - cx) / a) ** 2 + ((ys + 0.5 - cy) / b) ** 2 <= 1


def make_gt(seed: int = 0) -> tuple[dict, list[np.ndarray]]:
    """8 images, GT masks of all three area ranges as polygons, compressed and uncompressed RLE, one crowd
    region; returns the dict and each annotation's mask."""
    rng = np.random.default_rng(seed)
    images, anns, masks = [], [], []
    for img_id in range(1, 9):
        images.append({"id": img_id, "width": W, "height": H, "file_name": f"{img_id}.jpg"})
        for _ in range(int(rng.integers(2, 7))):
            mask = blob(rng, SIDES[str(rng.choice(list(SIDES)))])
            if not mask.any():
                continue
            ys, xs = np.nonzero(mask)
            form = len(anns) % 3
            if form == 0:  # a polygon: the mask is what pycocotools rasterises from it
                x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
                seg: object = [[x0, y0, x1, y0, (x0 + x1) / 2, y1]]
                mask = ref_mask.decode(ref_mask.merge(ref_mask.frPyObjects(seg, H, W))).astype(bool)
                if not mask.any():
                    continue
                ys, xs = np.nonzero(mask)
            elif form == 1:
                seg = rle(mask)
            else:
                flat = mask.ravel(order="F")
                edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
                runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
                seg = {"size": [H, W], "counts": ([0] if flat[0] else []) + runs}
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": int(rng.choice([1, 3, 7])),
                         "segmentation": seg, "area": float(mask.sum()), "iscrowd": 0,
                         "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
                                  float(ys.max() - ys.min() + 1)]})
            masks.append(mask)
    anns[1]["iscrowd"] = 1
    return {"images": images, "annotations": anns, "categories": [{"id": i, "name": n} for i, n in CATS]}, masks


def random_dets(gt: dict, masks: list[np.ndarray], rng: np.random.Generator) -> list[dict]:
    """Random blobs, up to 120 per image so the maxDets=100 cut is exercised."""
    dets = []
    for img in gt["images"]:
        for _ in range(int(rng.integers(0, 120))):
            dets.append({"image_id": img["id"], "category_id": int(rng.choice([1, 3, 7, 9])),
                         "segmentation": rle(blob(rng, SIDES[str(rng.choice(list(SIDES)))])),
                         "score": float(rng.random())})
    return dets


def jittered_dets(gt: dict, masks: list[np.ndarray], rng: np.random.Generator) -> list[dict]:
    """GT masks shifted a few pixels (some missed, some with the wrong class) plus false positives."""
    dets = []
    for ann, mask in zip(gt["annotations"], masks):
        if rng.random() < 0.15:
            continue
        shifted = np.roll(mask, tuple(int(v) for v in rng.integers(-3, 4, size=2)), axis=(0, 1))
        cat = ann["category_id"] if rng.random() > 0.1 else int(rng.choice([1, 3, 7]))
        dets.append({"image_id": ann["image_id"], "category_id": cat, "segmentation": rle(shifted),
                     "score": float(rng.uniform(0.3, 1.0))})
    return dets + random_dets(gt, masks, rng)[::8]


def reference(gt: dict, dets: list[dict]) -> RefCOCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        ref_gt = RefCOCO()
        ref_gt.dataset = copy.deepcopy(gt)
        ref_gt.createIndex()
        ev = RefCOCOeval(ref_gt, ref_gt.loadRes(copy.deepcopy(dets)), "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


@pytest.mark.parametrize("make_dets", [random_dets, jittered_dets])
def test_segm_ap_equals_pycocotools(make_dets, tmp_path, capsys):
    gt, masks = make_gt()
    dets = make_dets(gt, masks, np.random.default_rng(1))
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    ours = evaluate_detections(tmp_path / "gt.json", tmp_path / "dets.json", iou_type="segm")
    assert capsys.readouterr().out == ""
    ref = reference(gt, dets)
    assert set(ours.metrics) == {f"segm_{n}" for n in METRIC_NAMES}
    for name, value in zip(METRIC_NAMES, ref.stats):
        assert value >= 0, "the GT covers every area range, so no metric is undefined"
        assert ours.metrics[f"segm_{name}"] == pytest.approx(100 * value, abs=1e-9), name
    precision = ref.eval["precision"]  # [T, R, K, A, M]
    assert [c["category_id"] for c in ours.per_class] == [1, 3, 7, 9]
    for k, row in enumerate(ours.per_class):
        p = precision[:, :, k, 0, -1]
        assert "AP" not in row
        if (p > -1).any():
            assert row["segm_AP"] == pytest.approx(100 * p[p > -1].mean(), abs=1e-9)
            assert row["segm_AP50"] == pytest.approx(100 * p[0][p[0] > -1].mean(), abs=1e-9)
        else:
            assert math.isnan(row["segm_AP"]) and math.isnan(row["segm_AP50"])
    if make_dets is jittered_dets:
        assert 20 < ours.metrics["segm_AP"] < 95  # a meaningful score, neither 0 nor perfect


def test_bbox_and_segm_in_one_result(tmp_path):
    gt, masks = make_gt()
    rng = np.random.default_rng(2)
    dets = jittered_dets(gt, masks, rng)
    for d in dets:  # each entry with its box too, as predict writes them
        x, y, w, h = ref_mask.toBbox(dict(d["segmentation"], counts=d["segmentation"]["counts"].encode()))
        d["bbox"] = [float(x), float(y), float(w), float(h)]
    both = evaluate_detections(gt, dets, out_dir=tmp_path / "eval", iou_type=("bbox", "segm"))
    boxes, segm = evaluate_detections(gt, dets), evaluate_detections(gt, dets, iou_type="segm")
    assert both.metrics == {**boxes.metrics, **segm.metrics} and len(both.metrics) == 24
    # the boxes entries carry do not change mask AP: COCO takes a detection's area from its mask
    assert segm.metrics == evaluate_detections(gt, [{k: v for k, v in d.items() if k != "bbox"} for d in dets],
                                               iou_type="segm").metrics
    assert [set(r) for r in both.per_class] == [{"category_id", "name", "AP", "AP50", "segm_AP", "segm_AP50",
                                                 "num_gt", "num_dets"}] * 4
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["metrics"]["segm_AP"] == pytest.approx(segm.metrics["segm_AP"]) and "AP" in saved["metrics"]
    table = both.table()
    assert "segm:" in table and "segm_AP50" in table.splitlines()[table.splitlines().index("") + 1]
    write_results(dets, tmp_path / "res.json")  # RLE counts stay strings: the file scores the same
    assert evaluate_detections(gt, tmp_path / "res.json", iou_type="segm").metrics == segm.metrics


GOOD = {"image_id": 1, "category_id": 1, "score": 0.5, "segmentation": rle(np.eye(H, W, dtype=bool))}


@pytest.mark.parametrize("bad, match", [
    ({k: v for k, v in GOOD.items() if k != "segmentation"}, r"missing key\(s\) \['segmentation'\]"),
    ({**GOOD, "segmentation": {"size": [H, W + 1], "counts": GOOD["segmentation"]["counts"]}}, "size .* is not"),
    ({**GOOD, "segmentation": {"size": [H, W], "counts": GOOD["segmentation"]["counts"][:4]}}, "covers .* pixels"),
    ({**GOOD, "segmentation": {"size": [H, W], "counts": "!!"}}, "malformed segmentation"),
    ({**GOOD, "segmentation": {"size": [H, W], "counts": [5, -3]}}, "non-negative integers"),
    ({**GOOD, "segmentation": [[1, 2, 3]]}, "an RLE .* or polygons"),
    ({**GOOD, "score": float("nan")}, "non-finite"),
])
def test_segm_results_validation(bad, match, tmp_path):
    gt, _ = make_gt()
    path = tmp_path / "dets.json"
    path.write_text(json.dumps([GOOD, bad]))
    with pytest.raises(EvalInputError, match=match) as info:  # a short RLE would hang the mask API's IoU
        evaluate_detections(gt, path, iou_type="segm")
    assert "\n" not in str(info.value) and str(path) in str(info.value) and "entry 1" in str(info.value)


def test_segm_accepts_bytes_uncompressed_and_polygon_results_and_checks_the_gt():
    gt, masks = make_gt()
    mask = masks[0]
    raw = ref_mask.encode(np.asfortranarray(mask.astype(np.uint8)))  # bytes counts
    flat = mask.ravel(order="F")
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = ([0] if flat[0] else []) + np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    entry = {"image_id": gt["annotations"][0]["image_id"], "category_id": gt["annotations"][0]["category_id"],
             "score": 0.9}
    same = [dict(entry, segmentation=s) for s in (raw, {"size": [H, W], "counts": counts}, rle(mask))]
    values = {json.dumps(evaluate_detections(gt, [d], iou_type="segm").metrics) for d in same}
    assert len(values) == 1
    polygon = dict(entry, segmentation=[[10.0, 10.0, 50.0, 10.0, 30.0, 40.0]])
    assert evaluate_detections(gt, [polygon], iou_type="segm").metrics["segm_AP"] >= 0
    bare = copy.deepcopy(gt)
    del bare["annotations"][3]["segmentation"]
    with pytest.raises(EvalInputError, match="annotation id 4 has no segmentation"):
        evaluate_detections(bare, [same[0]], iou_type="segm")
    with pytest.raises(ValueError, match="iou_type must be"):
        evaluate_detections(gt, [same[0]], iou_type="keypoints")


# ----------------------------------------------------------------------------------------- results entries
def test_masks_to_rle_round_trips_and_is_json():
    masks = torch.from_numpy(np.random.default_rng(0).random((3, 17, 23)) > 0.6)
    rles = masks_to_rle(masks)
    assert json.loads(json.dumps(rles)) == rles and all(isinstance(r["counts"], str) for r in rles)
    decoded = ref_mask.decode([dict(r, counts=r["counts"].encode()) for r in rles])
    assert np.array_equal(decoded.transpose(2, 0, 1).astype(bool), masks.numpy())
    assert masks_to_rle(np.zeros((0, 17, 23), dtype=bool)) == []
    entries = mask_results(5, masks.numpy(), [0.5, 0.25, 0.125], np.array([1, 3, 7]),
                           boxes=torch.tensor([[1.0, 2.0, 11.0, 12.5]] * 3))
    assert [e["category_id"] for e in entries] == [1, 3, 7] and entries[0]["bbox"] == [1.0, 2.0, 10.0, 10.5]
    assert entries[2]["segmentation"] == rles[2] and entries[1]["score"] == 0.25


def test_to_coco_results_adds_segmentation_only_with_masks():
    det = {"boxes": torch.tensor([[1.0, 2.0, 5.0, 8.0], [0.0, 0.0, 3.0, 3.0]]), "scores": torch.tensor([0.9, 0.4]),
           "labels": torch.tensor([3, 1]), "names": ["car", "person"]}
    plain = to_coco_results([det], [42])
    assert plain == [{"image_id": 42, "category_id": 3, "bbox": [1.0, 2.0, 4.0, 6.0], "score": 0.9},
                     {"image_id": 42, "category_id": 1, "bbox": [0.0, 0.0, 3.0, 3.0], "score": 0.4}]
    masks = torch.zeros(2, 10, 12, dtype=torch.bool)
    masks[0, 2:8, 1:5] = True
    with_masks = to_coco_results([dict(det, masks=masks)], [42])
    assert [{k: v for k, v in e.items() if k != "segmentation"} for e in with_masks] == plain
    assert [e["segmentation"] for e in with_masks] == masks_to_rle(masks)
    with pytest.raises(ValueError, match="1 masks but 2 detections"):
        to_coco_results([dict(det, masks=masks[:1])], [42])


def _cli_eval(tmp_path, gt: dict, dets: list[dict], *extra: str) -> tuple[int, str]:
    from matchdetr.cli import main

    data = tmp_path / "data"
    (data / "val").mkdir(parents=True, exist_ok=True)
    (data / "annotations").mkdir(exist_ok=True)
    (data / "annotations" / "instances_val.json").write_text(json.dumps(gt))
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    out = tmp_path / "eval"
    code = main(["eval", "--predictions", str(tmp_path / "dets.json"), "--data", str(data), "--out", str(out), *extra])
    return code, (out / "metrics.json").read_text() if code == 0 else ""


def test_cli_scores_a_segm_only_results_file_as_pycocotools(tmp_path, capsys):
    """COCO's standard mask results (image_id, category_id, segmentation, score; no bbox) are scored on the
    masks, with the metric names `eval --checkpoint` prints and the per-class segm plots."""
    gt, masks = make_gt()
    dets = jittered_dets(gt, masks, np.random.default_rng(3))
    code, saved = _cli_eval(tmp_path, gt, dets)
    assert code == 0
    metrics = json.loads(saved)["metrics"]
    ref = reference(gt, dets)
    for name, value in zip(METRIC_NAMES, ref.stats):
        assert metrics[f"segm_{name}"] == pytest.approx(100 * value, abs=1e-9), name
    assert "AP" not in metrics and (tmp_path / "eval" / "per_class_segm_ap.png").is_file()
    assert "segm_AP" in capsys.readouterr().out


def test_cli_scores_boxes_and_masks_of_a_file_with_both_masks_by_mask_area(tmp_path):
    """Boxes and masks both; the masks equal pycocotools given the entries without their boxes (detectron2's
    rule: mask areas decide small / medium / large, not the boxes')."""
    gt, masks = make_gt()
    dets = jittered_dets(gt, masks, np.random.default_rng(4))
    for d in dets:
        x, y, w, h = ref_mask.toBbox(dict(d["segmentation"], counts=d["segmentation"]["counts"].encode()))
        d["bbox"] = [float(x), float(y), float(w) + 3.0, float(h) + 3.0]  # boxes that are not the masks' own
    code, saved = _cli_eval(tmp_path, gt, dets)
    metrics = json.loads(saved)["metrics"]
    ref = reference(gt, [{k: v for k, v in d.items() if k != "bbox"} for d in dets])
    assert code == 0 and "AP" in metrics
    for name, value in zip(METRIC_NAMES, ref.stats):
        assert metrics[f"segm_{name}"] == pytest.approx(100 * value, abs=1e-9), name
    code, saved = _cli_eval(tmp_path, gt, dets, "--iou-type", "bbox")
    assert code == 0 and "segm_AP" not in json.loads(saved)["metrics"]


def test_cli_results_of_neither_kind_is_one_line(tmp_path, capsys):
    gt, _ = make_gt()
    code, _ = _cli_eval(tmp_path, gt, [{"image_id": 1, "category_id": 1, "score": 0.5}])
    err = capsys.readouterr().err
    assert code == 2 and "needs a 'bbox'" in err and err.count("\n") == 1
