"""Reports: results.csv, per-class AP table/chart, PR curves, `matchdetr report`, `matchdetr eval --out` plots."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from matchdetr.engine.coco_eval import evaluate_detections
from matchdetr.reports.report import ResultsCsv, plot_pr_curves

GT = {
    "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
    "categories": [{"id": 1, "name": "cat"}, {"id": 5, "name": "dog"}, {"id": 9, "name": "emu"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30]},
        {"id": 2, "image_id": 1, "category_id": 5, "bbox": [50, 50, 40, 40]},
        {"id": 3, "image_id": 2, "category_id": 5, "bbox": [0, 0, 20, 60]},
    ],
}
DETS = [
    {"image_id": 1, "category_id": 1, "bbox": [11, 10, 30, 30], "score": 0.9},
    {"image_id": 1, "category_id": 5, "bbox": [50, 52, 40, 35], "score": 0.8},
    {"image_id": 2, "category_id": 5, "bbox": [40, 40, 20, 20], "score": 0.7},
    {"image_id": 2, "category_id": 5, "bbox": [0, 2, 20, 55], "score": 0.6},
]


def test_results_csv_appends_and_widens(tmp_path) -> None:
    jsonl = tmp_path / "metrics.jsonl"
    jsonl.write_text(json.dumps({"type": "train", "iter": 1, "loss": 3.0, "lr": 1e-4}) + "\n{broken\n")
    out = ResultsCsv(tmp_path / "results.csv", jsonl)
    out.append({"type": "train", "iter": 2, "loss": 2.5, "lr": 1e-4})
    out.append({"type": "eval", "iter": 2, "AP": 1.5, "APs": None})  # new columns: file rewritten
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [r["iter"] for r in rows] == ["1", "2", "2"]
    assert rows[0]["AP"] == "" and rows[2]["AP"] == "1.5" and rows[2]["loss"] == "" and rows[2]["APs"] == ""
    assert list(rows[0])[:4] == ["type", "iter", "lr", "loss"]


def test_eval_result_curves_and_plots(tmp_path) -> None:
    res = evaluate_detections(GT, DETS, out_dir=tmp_path / "eval")
    p = res.curves["precision"]
    assert p.shape == (10, 101, 3) and (p[:, :, 2] == -1).all()  # emu has no GT
    # AP from the stored curves equals COCO's per-class AP
    dog = p[:, :, 1]
    assert np.mean(dog[dog > -1]) * 100 == pytest.approx(res.per_class[1]["AP"], abs=1e-4)
    with np.load(tmp_path / "eval" / "pr_curves.npz") as saved:
        np.testing.assert_array_equal(saved["precision"], p)
    png = plot_pr_curves(res.curves, tmp_path / "pr.png", {1: "cat", 5: "dog"})
    assert Image.open(png).size[0] > 1000


def test_report_command_on_run_dir(tmp_path, capsys) -> None:
    from matchdetr.cli import main

    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    lines = [{"type": "train", "iter": i, "loss": 5.0 / i, "lr": 1e-4} for i in range(1, 6)]
    lines.append({"type": "eval", "iter": 5, "AP": 10.0, "AP50": 20.0})
    (run / "metrics.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    evaluate_detections(GT, DETS, out_dir=run / "eval")
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    for name in ("results.csv", "training_curves.png", "per_class_ap.csv", "per_class_ap.png", "pr_curves.png",
                 "confusion_matrix.csv", "confusion_matrix.png"):
        assert (run / name).exists() and name in out
    table = list(csv.DictReader((run / "per_class_ap.csv").open()))
    assert [r["name"] for r in table] == ["cat", "dog", "emu"]  # best AP first, undefined (no GT) last
    assert main(["report", str(tmp_path / "nothing")]) == 2


def test_cli_eval_out_writes_report(tmp_path, capsys) -> None:
    from matchdetr.cli import main

    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "gt.json").write_text(json.dumps(GT))
    (tmp_path / "dets.json").write_text(json.dumps(DETS))
    rc = main(["eval", "--predictions", str(tmp_path / "dets.json"), "--val-ann", str(tmp_path / "ann" / "gt.json"),
               "--val-images", str(tmp_path), "--out", str(tmp_path / "ev")])
    assert rc == 0, capsys.readouterr().err
    for name in ("metrics.json", "pr_curves.npz", "per_class_ap.png", "pr_curves.png", "per_class_ap.csv",
                 "confusion.npz", "confusion_matrix.csv", "confusion_matrix.png"):
        assert (tmp_path / "ev" / name).exists(), name


def test_report_help(capsys) -> None:
    from matchdetr.cli import main

    with pytest.raises(SystemExit):
        main(["report", "--help"])
    assert "results.csv" in capsys.readouterr().out


def test_per_class_reports_of_mask_only_and_box_and_mask_evaluations(tmp_path) -> None:
    from matchdetr.engine.eval_result import EvalResult
    from matchdetr.reports.report import write_eval_report

    masks = [{"category_id": 1, "name": "cat", "segm_AP": 40.0, "segm_AP50": 80.0, "num_gt": 3, "num_dets": 4},
             {"category_id": 5, "name": "dog", "segm_AP": float("nan"), "segm_AP50": float("nan"), "num_gt": 0,
              "num_dets": 1}]
    written = write_eval_report(EvalResult({"segm_AP": 40.0}, masks), tmp_path / "segm")
    assert sorted(p.name for p in written) == ["per_class_ap.csv", "per_class_segm_ap.png"]
    rows = list(csv.DictReader((tmp_path / "segm" / "per_class_ap.csv").open()))
    assert list(rows[0]) == ["category_id", "name", "segm_AP", "segm_AP50", "num_gt", "num_dets"]
    assert rows[0]["name"] == "cat"
    both = [dict(c, AP=a, AP50=a + 10) for c, a in zip(masks, (10.0, 20.0))]
    written = write_eval_report(EvalResult({"AP": 15.0, "segm_AP": 40.0}, both), tmp_path / "both")
    assert sorted(p.name for p in written) == ["per_class_ap.csv", "per_class_ap.png", "per_class_segm_ap.png"]
    rows = list(csv.DictReader((tmp_path / "both" / "per_class_ap.csv").open()))
    assert list(rows[0])[2:6] == ["AP", "AP50", "segm_AP", "segm_AP50"] and rows[0]["name"] == "dog"  # by box AP
    for name in ("per_class_ap.png", "per_class_segm_ap.png"):
        assert Image.open(tmp_path / "both" / name).size[0] > 0


def test_confusion_matrix_and_per_class_precision_recall_as_ultralytics_counts_them(tmp_path) -> None:
    from matchdetr.engine.confusion import confusion_matrix
    from matchdetr.engine.coco_eval import load_coco

    res = evaluate_detections(GT, DETS, out_dir=tmp_path)
    # rows predicted (cat, dog, emu, background), columns true; dog's box at (40, 40) overlaps nothing
    np.testing.assert_array_equal(res.confusion.matrix, [[1, 0, 0, 0], [0, 2, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]])
    rows = {r["name"]: r for r in res.per_class}
    assert (rows["cat"]["P"], rows["cat"]["R"], rows["dog"]["R"]) == (100.0, 100.0, 100.0)
    assert rows["dog"]["P"] == pytest.approx(200 / 3) and np.isnan(rows["emu"]["P"]) and np.isnan(rows["emu"]["R"])
    assert "P, R: precision and recall of the detections scoring above 0.25 at IoU 0.5" in res.table()
    # a right box with the wrong name is off the diagonal; a detection at or under the threshold does not count;
    # the best-overlapping detection takes the GT and the other is a false detection; crowd GTs are left out
    gt = dict(GT, annotations=GT["annotations"] + [{"id": 4, "image_id": 2, "category_id": 1, "bbox": [60, 60, 30,
                                                                                                    30], "iscrowd": 1}])
    dets = [{"image_id": 1, "category_id": 5, "bbox": [10, 10, 30, 30], "score": 0.9},
            {"image_id": 1, "category_id": 1, "bbox": [12, 10, 30, 30], "score": 0.8},
            {"image_id": 1, "category_id": 5, "bbox": [50, 50, 40, 40], "score": 0.25},
            {"image_id": 2, "category_id": 9, "bbox": [60, 60, 30, 30], "score": 0.5}]
    cm = confusion_matrix(load_coco(gt), dets)
    np.testing.assert_array_equal(cm.matrix, [[0, 0, 0, 1], [1, 0, 0, 0], [0, 0, 0, 1], [0, 2, 0, 0]])
    with np.load(tmp_path / "confusion.npz") as saved:
        np.testing.assert_array_equal(saved["matrix"], res.confusion.matrix)
        assert saved["names"].tolist() == ["cat", "dog", "emu"]
    from matchdetr.reports.report import write_eval_report

    write_eval_report(res, tmp_path)
    table = list(csv.reader((tmp_path / "confusion_matrix.csv").open()))
    assert table[0] == ["predicted \\ true", "cat", "dog", "emu", "background"]
    assert table[2] == ["dog", "0", "2", "0", "1"]
    assert Image.open(tmp_path / "confusion_matrix.png").size[0] > 300
    per_class = list(csv.DictReader((tmp_path / "per_class_ap.csv").open()))
    assert float(per_class[1]["P"]) == pytest.approx(200 / 3)
