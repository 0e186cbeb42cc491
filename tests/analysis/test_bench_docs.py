"""``matchdetr bench docs`` and the named studies: every generated table lands between its markers."""

from __future__ import annotations

import json

import pytest
from conftest import MICRO

from matchdetr.analysis import studies
from matchdetr.analysis.convergence import ModelRun
from matchdetr.analysis.flops import ModelCost
from matchdetr.analysis.flops import markdown_table as flops_table
from matchdetr.analysis.speed import SpeedResult
from matchdetr.analysis.speed import markdown_table as speed_table
from matchdetr.cli import main


def test_studies_cover_the_four_comparisons_of_issue_7() -> None:
    models = studies.study_models()
    assert len(models) == len(set(models))  # SAM-DETR++-tiny, in two studies, is trained once
    for pair in [("detr-tiny", "sam-detr-tiny", "sam-detr-plus-plus-tiny"), ("deformable-detr-tiny", "stable-deformable-detr-tiny"),
                 ("dino-tiny", "stable-dino-tiny"), ("sam-detr-plus-plus-tiny", "stable-sam-detr-plus-plus-tiny")]:
        assert any(set(pair) <= set(s.models) for s in studies.STUDIES.values()), pair
    assert studies.study_models(["dino"]) == ["dino-tiny", "stable-dino-tiny"]
    # The Deformable-DETR family study is documented but kept out of the default (60-minute) run.
    assert "deformable-detr-refine-tiny" not in models
    assert "dab-deformable-detr-tiny" in studies.study_models(["deformable-family"])
    with pytest.raises(ValueError, match="unknown study 'nope'; available: sam, "):
        studies.study_models(["nope"])


def test_loss_study_entries_are_dino_tiny_with_one_change() -> None:
    from matchdetr import presets

    assert not studies.STUDIES["iou-aware"].default  # seven DINO-tiny runs stay out of the default study
    base = presets.get("dino-tiny")
    expected = {"dino-tiny": ("focal", "focal"), "dino-tiny+psl": ("position_supervised", "focal"),
                "dino-tiny+vfl": ("varifocal", "focal"), "dino-tiny+qfl": ("quality_focal", "focal"),
                "dino-tiny+ia-bce": ("ia_bce", "focal"), "dino-tiny+mal": ("matchability_aware", "focal"),
                "dino-tiny+psl+pmc": ("position_supervised", "position_modulated")}
    assert list(studies.STUDIES["iou-aware"].models) == list(expected)
    for name, (loss, cost) in expected.items():
        cfg = studies.model_config(name)
        assert (cfg.model.loss.class_loss.kind, cfg.model.matcher.class_cost.kind) == (loss, cost)
        cfg.model.loss.class_loss, cfg.model.matcher.class_cost = base.model.loss.class_loss, base.model.matcher.class_cost
        assert cfg.to_dict() == base.to_dict(), name  # nothing else differs
    with pytest.raises(Exception, match="unknown preset 'dino-tiny\\+nope'"):
        studies.model_config("dino-tiny+nope")


def test_splice_replaces_only_its_block() -> None:
    doc = "a\n<!-- bench:x -->\nold\n<!-- /bench:x -->\nb\n<!-- bench:y -->\nkeep\n<!-- /bench:y -->\n"
    out = studies.splice(doc, "x", "new \\1 $1 line\n")  # replacement text is taken literally
    assert out == "a\n<!-- bench:x -->\nnew \\1 $1 line\n<!-- /bench:x -->\nb\n<!-- bench:y -->\nkeep\n<!-- /bench:y -->\n"
    assert studies.splice(out, "x", "again") == doc.replace("old", "again")
    with pytest.raises(ValueError, match="no '<!-- bench:z -->'"):
        studies.splice(doc, "z", "t")


def test_convergence_markdown_lists_curve_final_metrics_and_unstable() -> None:
    final = {"AP": 1.5, "AP50": 3.25, "AP75": 0.5, "APs": 0.1, "APm": 2.0, "APl": None}
    runs = [ModelRun("dino-tiny", [(250, {"AP": 0.1}), (500, {"AP": 0.7})], dict(final, AP=0.7), 7.25,
                     {"layers": [1, 2], "scores": [30.0, 12.5]}),
            ModelRun("stable-dino-tiny", [(250, {"AP": 0.2}), (500, final)], final, 8.0,
                     {"layers": [1, 2], "scores": [20.0, 10.0]},
                     {"rows": [{"area": "small", "found": 1.0, "named": 2.0}, {"area": "all", "found": 52.44, "named": 30.06}]})]
    table = studies.convergence_markdown(runs, studies.STUDIES["dino"]).splitlines()
    assert table[0] == ("| preset | AP @250 | AP @500 | AP50 @500 | AP75 | APs | APm | APl | unstable l1 | unstable l2 "
                        "| found % | named % | minutes |")
    assert table[2].endswith("| 30.0 | 12.5 | - | - | 7.2 |")  # a run without the breakdown
    assert table[3] == "| `stable-dino-tiny` | 0.20 | 1.50 | 3.25 | 0.50 | 0.10 | 2.00 | - | 20.0 | 10.0 | 52.4 | 30.1 | 8.0 |"


def test_flops_and_speed_tables() -> None:
    rows = flops_table([ModelCost("detr-r50", 41_575_711, 41_353_311, 80.7), ModelCost("detr-tiny", 2_170_000, 2_170_000, None)],
                       (800, 1066)).splitlines()
    assert rows[2] == "| `detr-r50` | 41.58M / 41.35M | 41M | 80.7 | 86 | -6 % | DETR table 1 / SAM-DETR++ table 1 |"
    assert rows[3] == "| `detr-tiny` | 2.17M / 2.17M | - | - | - | - | - |"
    wide = flops_table([ModelCost("detr-r50", 41_575_711, 41_353_311, 80.7)], (800, 1066),
                       [ModelCost("detr-r50", 41_575_711, 41_353_311, 90.0)]).splitlines()
    assert wide[0].endswith("| gap | GFLOPs @800x1200 (gap) | paper source |")
    assert wide[2] == "| `detr-r50` | 41.58M / 41.35M | 41M | 80.7 | 86 | -6 % | 90.0 (+5 %) | DETR table 1 / SAM-DETR++ table 1 |"
    speed = speed_table([SpeedResult("matchdetr", [100.0], [800.0], 500.0),
                         SpeedResult("HF transformers", [200.0], [1000.0], 400.0)])
    assert speed.splitlines()[-1] == "| **ratio ours / HF** (per pair: median, min-max) | **0.50** | **0.80** | 1.25 |"


def test_bench_docs_fills_the_document_and_resumes(synth_dir, tmp_path, monkeypatch, capsys) -> None:
    # Two one-preset studies keep the test short; the real ones differ only in their preset lists.
    monkeypatch.setattr(studies, "STUDIES", {"a": studies.Study("A", ("stable-dino-tiny",), "first"),
                                             "b": studies.Study("B", ("detr-tiny",), "second")})
    doc = tmp_path / "docs" / "benchmarks.md"
    doc.parent.mkdir()
    blocks = ["convergence-time", "convergence-a", "convergence-b"]
    doc.write_text("# B\n" + "".join(f"<!-- bench:{k} -->\nstale\n<!-- /bench:{k} -->\ntext\n" for k in blocks))
    args = ["bench", "docs", "--only", "convergence", "--doc", str(doc), "--data", str(synth_dir), "--out",
            str(tmp_path / "runs"), "--unstable-images", "2", "--device", "cpu", "--iters", "2",
            "--eval-every", "2", "--batch-size", "2"] + [x for o in MICRO + ["data.num_workers=0"] for x in ("--set", o)]
    assert main(args) == 0
    text = doc.read_text()
    assert "stale" not in text and text.count("\ntext\n") == 3
    assert "| `stable-dino-tiny` | " in text and "| `detr-tiny` | " in text
    assert "2 presets, " in text
    for name in ("a_curves.png", "a_unstable.png", "b_curves.png"):
        assert (doc.parent / "benchmarks" / name).stat().st_size > 0
    assert (tmp_path / "runs" / "a" / "table.md").exists()
    # A second run reads the finished presets back: same tables, no training. One written before the error
    # breakdown existed gets it from its saved weights, the same as when it was trained.
    done = tmp_path / "runs" / "detr-tiny" / "bench.json"
    record = json.loads(done.read_text())
    assert {r["area"] for r in record.pop("errors")["rows"]} == {"all", "small", "medium", "large"}
    done.write_text(json.dumps(record))
    assert main(args) == 0
    assert doc.read_text() == text and json.loads(done.read_text())["errors"]
    assert main(args + ["--study", "b"]) == 0  # one study alone: its block; the default study's line is kept
    assert doc.read_text() == text
    assert main(["bench", "docs", "--only", "nope", "--doc", str(doc)]) == 2
    assert "unknown part 'nope'" in capsys.readouterr().err
