import pytest

from matchdetr.analysis.speed import bench_speed, format_table


def test_bench_speed_vs_hf_runs_on_identical_weights():
    pytest.importorskip("transformers")
    # HF's Deformable-DETR has ResNet backbones only: the tiny preset with the quarter-width ResNet-18
    resnet = ["model.backbone.name=resnet18", "model.backbone.width=16", "model.backbone.norm=bn",
              "model.backbone.weights=", "model.backbone.frozen_stages=0"]
    rows = bench_speed("deformable-detr-tiny", vs_hf=True, device="cpu", size=(64, 64), warmup=0, repeats=1,
                       overrides=resnet)
    assert [r.impl for r in rows] == ["matchdetr", "HF transformers"]
    assert all(r.infer_ms > 0 and r.train_ms > 0 and r.peak_mem_mb > 0 for r in rows)
    table = format_table("deformable-detr-tiny", rows, "cpu", (64, 64))
    assert "ratio ours/HF" in table


def test_no_hf_twin_for_other_archs():
    from matchdetr import build
    from matchdetr.analysis.hf_twin import hf_config

    with pytest.raises(ValueError, match="no HF transformers twin"):
        hf_config(build("detr-tiny", num_classes=3).config)
    with pytest.raises(ValueError, match="backbone 'efficientnet-lite0'"):
        hf_config(build("deformable-detr-tiny", num_classes=3).config)
