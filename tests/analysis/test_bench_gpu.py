"""``matchdetr bench gpu``: the smoke run through the command line (every part, finite numbers), the refusal
to overwrite earlier results, and a failing, hanging or crashing job recorded while the rest runs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest
import torch

from matchdetr.analysis.gpu_bench import PARTS, GpuBenchPlan, run_job


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return []


def test_smoke_run_records_every_part_with_finite_numbers(tmp_path, cli_env):
    out = tmp_path / "bench"
    cmd = [sys.executable, "-m", "matchdetr", "bench", "gpu", "--smoke", "--out", str(out)]
    proc = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "gpu_bench.json").read_text())
    assert results["smoke"] is True and list(results["parts"]) == list(PARTS)
    for part, record in results["parts"].items():
        assert record["status"] == "ok", (part, record["jobs"])
        assert record["rows"] and all(r["status"] == "ok" for r in record["rows"]), part
        numbers = _numbers(record["rows"])
        assert numbers and all(math.isfinite(n) for n in numbers), part
    parts = results["parts"]
    presets = GpuBenchPlan.smoke_plan("cpu").train_presets
    assert {(r["preset"], r["mode"]) for r in parts["train_step"]["rows"]} == {(p, m) for p in presets for m in ("eager", "compiled")}
    (swin,) = parts["swin_train"]["rows"]
    assert swin["checkpointing"] and swin["mode"] == "eager" and swin["ms"] > 0
    assert all(r["ms"] > 0 and r["peak_mem_mib"] > 0 for r in parts["train_step"]["rows"])
    assert len(parts["inference"]["rows"]) == 2 * 2 * 2  # presets x sizes x (float32, bf16)
    assert {r["impl"] for r in parts["deform_attn"]["rows"]} == {"ms_deform_attn", "stacked reference"}
    ops = {r["op"]: r for r in parts["parity"]["rows"]}
    assert set(ops) == {"ms_deform_attn", "roi_align", "nms", "batched_nms", "forward stable-dino-tiny"}
    assert ops["ms_deform_attn"]["max_rel_diff"] < 1e-4 and ops["roi_align"]["max_rel_diff"] < 1e-4
    assert ops["nms"]["mismatched_kept"] == 0 and ops["forward stable-dino-tiny"]["max_abs_diff"] < 1e-3
    (run,) = parts["bf16_train"]["rows"]
    assert run["nonfinite_steps"] == 0 and run["finite_steps"] == run["iters"] == 2
    table = (out / "gpu_bench.md").read_text()
    assert table in proc.stdout and "| (a) training step | stable-dino-tiny compiled" in table

    before = {p.name: p.read_bytes() for p in out.glob("gpu_bench.*")}
    again = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        f"matchdetr: error: --out {out}: already holds gpu_bench.json, gpu_bench.md of an earlier bench; give a new "
        "--out (the default is a new timestamped folder) or move them away"]
    assert {p.name: p.read_bytes() for p in out.glob("gpu_bench.*")} == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_smoke_a_cuda_device_is_required(tmp_path, capsys):
    from matchdetr.cli import main

    for device in ("auto", "cpu"):
        assert main(["bench", "gpu", "--device", device, "--out", str(tmp_path / "b")]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [
            f"matchdetr: error: bench gpu: needs a CUDA device, and --device {device} gives cpu here; --smoke runs "
            "the reduced form on the CPU"]
    assert main(["bench", "gpu", "--device", "cuda", "--out", str(tmp_path / "b")]) == 2
    assert "--device cuda: CUDA is not available here" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()  # refused before the folder is made


@pytest.mark.parametrize("function,status,error", [
    ("raises", "error", "ValueError: injected failure"),
    ("hangs", "timeout", "stopped at its time budget of 8 s"),
    ("crashes", "error", "the process died (exit code 3)"),
])
def test_a_failing_job_is_recorded_with_the_rows_it_finished(function, status, error):
    job = run_job(f"gpu_bench_faults:{function}", GpuBenchPlan.smoke_plan("cpu"), {}, budget_s=8)
    assert job["status"] == status and job["error"] == error
    assert job["rows"] == [{"status": "ok", "ms": 1.0}]
    assert job["seconds"] < 30


def test_the_full_plan_fits_in_8_minutes():
    plan = GpuBenchPlan.full("cuda")
    assert sum(plan.budgets.values()) <= 460  # the parent's start-up and CUDA initialisation get the rest
    assert set(plan.budgets) == set(PARTS)


def test_the_table_says_which_part_failed_or_ran_out_of_time():
    from matchdetr.analysis.gpu_bench import TITLES
    from matchdetr.analysis.gpu_bench_report import markdown

    ok = {"preset": "p", "mode": "eager", "size": [8, 8], "batch": 2, "amp": "bf16", "status": "ok", "ms": 12.5,
          "peak_mem_mib": 100.0}
    parts = {"train_step": {"title": TITLES["train_step"], "status": "partial", "rows": [ok],
                            "jobs": [{"preset": "p", "status": "timeout", "error": "stopped at its time budget of 130 s",
                                      "rows": [ok]}]},
             "parity": {"title": TITLES["parity"], "status": "failed", "rows": [],
                        "jobs": [{"status": "error", "error": "RuntimeError: CUDA error", "rows": []}]}}
    table = markdown({"smoke": False, "device_name": "GPU", "device": "cuda", "torch": "2", "cuda": "12",
                      "started": "now", "seconds": 1.0, "parts": parts})
    assert "| (a) training step | p eager, 8x8, batch 2, bf16 | 12.5 ms, peak 100 MiB |" in table
    assert "| (a) training step | p | timeout: stopped at its time budget of 130 s |" in table
    assert "| (d) device vs float64 CPU |  | error: RuntimeError: CUDA error |" in table
