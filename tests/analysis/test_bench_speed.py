import pytest
from conftest import resnet18

from matchdetr.analysis.speed import SpeedResult, bench_speed, format_table, markdown_table, pair_ratios


def test_bench_speed_vs_hf_runs_on_identical_weights():
    pytest.importorskip("transformers")
    # HF's Deformable-DETR has ResNet backbones only: the tiny preset with the quarter-width ResNet-18
    resnet = resnet18("deformable-detr-tiny", width=16)
    rows = bench_speed("deformable-detr-tiny", vs_hf=True, device="cpu", size=(64, 64), warmup=0, repeats=2,
                       overrides=resnet)
    assert [r.impl for r in rows] == ["matchdetr", "HF transformers"]
    assert all(len(r.infer_runs) == 2 and len(r.train_runs) == 2 for r in rows)
    assert all(r.infer_ms > 0 and r.train_ms > 0 and r.peak_mem_mb > 0 for r in rows)
    table = format_table("deformable-detr-tiny", rows, "cpu", (64, 64))
    assert "ratio ours/HF" in table and "per-pair" in table
    # both in this process: same rows, no peak memory
    one = bench_speed("deformable-detr-tiny", vs_hf=True, device="cpu", size=(64, 64), warmup=0, repeats=1,
                      overrides=resnet, one_process=True)
    assert [r.peak_mem_mb for r in one] == [None, None]
    assert "| - |" in markdown_table(one)


def test_pair_ratios_and_their_spread() -> None:
    rows = [SpeedResult("matchdetr", [100.0, 120.0, 90.0], [800.0, 700.0, 900.0], 500.0),
            SpeedResult("HF transformers", [200.0, 200.0, 100.0], [1000.0, 1000.0, 1000.0], 400.0)]
    s = pair_ratios(rows)
    assert s["infer"].ratios == [0.5, 0.6, 0.9] and s["infer"].text() == "0.60 (0.50-0.90)"
    assert s["train"].median == 0.8
    assert markdown_table(rows).splitlines()[-1] == (
        "| **ratio ours / HF** (per pair: median, min-max) | **0.60 (0.50-0.90)** | **0.80 (0.70-0.90)** | 1.25 |")


def test_a_failing_worker_names_the_implementation() -> None:
    with pytest.raises(RuntimeError, match=r"speed measurement \(matchdetr\) failed: .*no-such-preset"):
        bench_speed("no-such-preset", device="cpu", size=(32, 32), warmup=0, repeats=1)


def test_no_hf_twin_for_other_archs():
    from matchdetr import build
    from matchdetr.analysis.hf_twin import hf_config

    with pytest.raises(ValueError, match="no HF transformers twin"):
        hf_config(build("detr-tiny", num_classes=3).config)
    with pytest.raises(ValueError, match="no HF transformers twin for a efficientnet_lite backbone"):
        hf_config(build("deformable-detr-tiny", num_classes=3).config)


def test_hf_twin_trains_what_ours_trains_and_drops_out_alike():
    pytest.importorskip("transformers")
    import torch

    from matchdetr import build
    from matchdetr.analysis.hf_twin import hf_twin
    from matchdetr.config import apply_overrides
    from matchdetr.interop.hf_deformable_detr import rename_key

    base = build("deformable-detr-tiny", num_classes=3).config
    cfg = apply_overrides(base, resnet18("deformable-detr-tiny", width=16, frozen_stages=1, norm="frozen_bn"))
    from matchdetr import api

    ours = api.from_config(cfg)
    hf = hf_twin(ours)
    levels = len(cfg.model.backbone.return_levels)
    mine = {n for n, p in ours.named_parameters() if p.requires_grad}
    theirs = {rename_key(n, levels) for n, p in hf.named_parameters() if p.requires_grad}
    frozen = {rename_key(n, levels) for n, p in hf.named_parameters() if not p.requires_grad}
    assert theirs == mine and frozen.isdisjoint(mine)
    # HF's own name test ("stage.1") would have frozen every backbone parameter
    assert any(n.startswith("backbone.") for n in theirs) and any(n.startswith("backbone.") for n in frozen)
    assert hf.config.activation_dropout == hf.config.attention_dropout == cfg.model.transformer.dropout
    hf.train()
    x = torch.randn(1, 3, 64, 64)
    labels = [{"class_labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.3, 0.3]])}]
    hf(pixel_values=x, pixel_mask=torch.ones(1, 64, 64, dtype=torch.long), labels=labels).loss.backward()
    stages = [p for n, p in hf.named_parameters() if ".encoder.stages.3." in n]
    assert stages and all(p.grad is not None and p.grad.abs().sum() > 0 for p in stages)


def test_a_worker_killed_for_memory_is_one_line_from_the_cli(capsys) -> None:
    """The kernel's OOM killer ends a worker with SIGKILL and no answer: the command says which measurement died
    and why, in one line (a full-size model at 800x1333 is the usual way to get there)."""
    import argparse
    import signal
    from types import SimpleNamespace

    from matchdetr.analysis.speed import _Remote
    from matchdetr.cli.errors import run_command

    def eof() -> None:
        raise EOFError

    remote = object.__new__(_Remote)
    remote.impl = "ours"
    remote.conn = SimpleNamespace(poll=lambda timeout: True, recv=eof, send=lambda msg: None)
    remote.proc = SimpleNamespace(join=lambda: None, exitcode=-signal.SIGKILL)
    code = run_command(lambda args: remote.run("train"), argparse.Namespace())
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1
    assert "timing a training step" in err[0] and "out of memory" in err[0] and "Traceback" not in err[0]


def test_infer_only_times_no_training_step() -> None:
    rows = bench_speed("dino-tiny", size=(64, 64), warmup=0, repeats=1, infer_only=True, one_process=True,
                       overrides=resnet18("dino-tiny"))
    assert rows[0].infer_runs and rows[0].train_runs == []
    table = format_table("dino-tiny", rows, "cpu", (64, 64))
    assert "nan" not in table and "nan" not in markdown_table(rows)
