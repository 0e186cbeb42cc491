"""``matchdetr bench gpu``: one command that measures what a GPU session should, within about 8 minutes.

Parts (JSON keys), in the order they run, cheap and safe first, the compiling one last:

- ``deform_attn`` (c): the deformable-attention op at a 4-level encoder's size, forward and forward + backward,
  against the stacked textbook formulation (``ops/ms_deform_attn_stacked.py``).
- ``parity`` (d): every op (deformable attention, RoIAlign, NMS) and one whole forward pass on the device in
  float32 against float64 on the CPU.
- ``bf16_train`` (e): a 50-iteration bf16 run of the trainer on a tiny preset; no step may be non-finite.
- ``inference`` (b): batch-1 latency (ms, images/s) at 640x640 and 800x1333, float32 and bf16 autocast.
- ``train_step`` (a): the training step of Stable-DINO-4scale-R50 and SAM-DETR++-R50 at 800x1333, batch 2,
  bf16 autocast, eager and compiled (median ms, peak memory, compile time).
- ``swin_train`` (f): the training step of Stable-DINO's headline model, Stable-DINO-4scale Swin-L (218M), at
  800x1333, batch 2, bf16 autocast, eager, with activation checkpointing in the Swin stages and in every encoder
  and decoder layer (what fits it on one GPU).

Each job runs in its own spawned process with a time budget: a job that fails (an error, a crash of the
device, running out of memory) or overruns is recorded as such, with the rows it finished, and the next part
runs. ``--smoke`` runs the same jobs on the CPU with tiny presets, micro sizes and 2 timed iterations; its
"compiled" rows go through dynamo's ``eager`` backend (the graph capture without inductor's minutes of C++).
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PARTS = ("deform_attn", "parity", "bf16_train", "inference", "train_step", "swin_train")
TITLES = {"train_step": "(a) training step", "inference": "(b) inference latency, batch 1",
          "deform_attn": "(c) deformable attention op", "parity": "(d) device vs float64 CPU",
          "bf16_train": "(e) bf16 training run", "swin_train": "(f) Swin-L training step"}
# Micro sizes for --smoke (as the tests' MICRO): the same code path in seconds on a CPU; a narrow ResNet-18 at the
# smoke presets' levels (C4, C5) in place of their EfficientNet-Lite0.
SMOKE_OVERRIDES = [
    "model.backbone=resnet", "model.backbone.depth=18", "model.backbone.width=8", "model.backbone.norm=bn",
    "model.backbone.return_levels=[4,5]",
    "model.backbone.frozen_stages=0", "model.transformer.hidden_dim=32", "model.transformer.num_heads=4",
    "model.transformer.dim_feedforward=64", "model.transformer.enc_layers=1", "model.transformer.dec_layers=2",
    "model.transformer.num_queries=20", "data.train_scales=[96,112]", "data.train_max_size=160",
    "data.crop_resize_scales=[96]", "data.crop_min=64", "data.crop_max=96",
]


# A micro Swin at the smoke presets' levels, every stage checkpointed: the Swin part's code path on a CPU.
SMOKE_SWIN = ('{"kind": "swin", "embed_dim": 16, "depths": [2, 2, 2, 2], "num_heads": [1, 2, 2, 4], "window_size": 7, '
              '"return_levels": [4, 5], "checkpoint_levels": [2, 3, 4, 5]}')


@dataclass
class GpuBenchPlan:
    """What ``bench gpu`` measures and how long each part may take (seconds of wall time, process start
    included); ``full`` and ``smoke`` are the two plans the command uses."""

    device: str
    smoke: bool
    work_dir: str = ""
    train_presets: list[str] = field(default_factory=lambda: ["stable-dino-4scale-r50", "sam-detr-plus-plus-r50"])
    train_size: list[int] = field(default_factory=lambda: [800, 1333])
    train_batch: int = 2
    amp: str = "bf16"
    compile_backend: str = "inductor"
    infer_sizes: list[list[int]] = field(default_factory=lambda: [[640, 640], [800, 1333]])
    num_classes: int = 91
    warmup: int = 3
    repeats: int = 10
    parity_preset: str = "stable-dino-4scale-r50"
    parity_size: list[int] = field(default_factory=lambda: [480, 640])
    stable_preset: str = "stable-dino-tiny"
    stable_iters: int = 50
    stable_batch: int = 4
    stable_images: int = 32
    stable_sides: list[int] = field(default_factory=lambda: [160, 256])
    workers: int = 2
    overrides: list[str] = field(default_factory=list)
    swin_preset: str = "stable-dino-4scale-swin-l"
    # every Swin stage recomputed in the backward pass (with train.checkpoint_activations for the transformer)
    swin_overrides: list[str] = field(default_factory=lambda: ["model.backbone.checkpoint_levels=[2,3,4,5]"])
    # 455 s in all: under 8 minutes with the parent's own start-up and CUDA initialisation.
    budgets: dict[str, float] = field(default_factory=lambda: {"deform_attn": 25, "parity": 60, "bf16_train": 60,
                                                               "inference": 50, "train_step": 200,
                                                               "swin_train": 60})

    @classmethod
    def full(cls, device: str) -> "GpuBenchPlan":
        return cls(device=device, smoke=False)

    @classmethod
    def smoke_plan(cls, device: str) -> "GpuBenchPlan":
        return cls(device=device, smoke=True, train_presets=["stable-dino-tiny", "sam-detr-plus-plus-tiny"],
                   train_size=[96, 128], compile_backend="eager", infer_sizes=[[96, 96], [128, 160]], num_classes=10,
                   warmup=1, repeats=2, parity_preset="stable-dino-tiny", parity_size=[96, 128], stable_iters=2,
                   stable_batch=2, stable_images=4, stable_sides=[96, 128], workers=0, overrides=list(SMOKE_OVERRIDES),
                   swin_preset="stable-dino-tiny", swin_overrides=[f"model.backbone={SMOKE_SWIN}"],
                   # caps, not targets: the smoke run takes about a minute on an idle 2-core machine
                   budgets={"deform_attn": 60, "parity": 60, "bf16_train": 90, "inference": 60, "train_step": 180,
                            "swin_train": 60})

    def jobs(self, part: str) -> list[dict[str, Any]]:
        """The spawned jobs of ``part``: one per preset where presets are measured, else one."""
        if part == "train_step":
            return [{"preset": p} for p in self.train_presets]
        if part == "inference":
            return [{"preset": p} for p in self.train_presets]
        if part == "swin_train":
            return [{"preset": self.swin_preset, "modes": ["eager"], "overrides": list(self.swin_overrides),
                     "checkpointing": True}]
        return [{}]


# "module:function" of each part's job, imported in the spawned process
JOB_FUNCTIONS = {part: f"matchdetr.analysis.{module}:{part}" for part, module in (
    ("train_step", "gpu_bench_parts"), ("inference", "gpu_bench_parts"), ("deform_attn", "gpu_bench_parts"),
    ("parity", "gpu_bench_checks"), ("bf16_train", "gpu_bench_checks"))}
JOB_FUNCTIONS["swin_train"] = JOB_FUNCTIONS["train_step"]  # the same step, on the Swin-L preset


def _child(function: str, plan: dict[str, Any], kwargs: dict[str, Any], deadline: float, out: Any) -> None:
    """Entry point of a spawned job: rows go through the pipe ``out`` as they finish, then ``done`` (or an
    error)."""
    import importlib

    try:
        module, name = function.split(":")
        fn = getattr(importlib.import_module(module), name)
        fn(plan, lambda row: out.send(("row", row)), deadline, **kwargs)
        out.send(("done", None))
    except BaseException as err:  # recorded in the JSON; the parent goes on with the next job
        out.send(("error", {"error": f"{type(err).__name__}: {' '.join(str(err).split())}"[:500],
                           "traceback": traceback.format_exc()[-3000:]}))


def run_job(function: str, plan: GpuBenchPlan, kwargs: dict[str, Any], budget_s: float) -> dict[str, Any]:
    """Run ``function`` ("module:name") with ``kwargs`` in a spawned process for at most ``budget_s`` seconds:
    ``{**kwargs, "status": ok | error | timeout, "rows": [...], "error"?, "seconds"}``."""
    ctx = mp.get_context("spawn")  # a fresh process: its own CUDA context and peak memory, killable
    # a pipe, not a Queue: no semaphore for the resource tracker to find leaked when a job is killed
    receive, out = ctx.Pipe(duplex=False)
    start = time.time()
    # the job's own deadline leaves it a tenth of the budget to finish the measurement it is in
    # not a daemon: the trainer's DataLoader workers are its children
    proc = ctx.Process(target=_child, args=(function, dataclasses.asdict(plan), kwargs, start + 0.9 * budget_s, out))
    proc.start()
    out.close()  # the job holds the write end now: the pipe ends (EOF) when its process exits
    job: dict[str, Any] = {**kwargs, "status": None, "rows": []}
    while True:
        try:
            kind, payload = receive.recv() if receive.poll(0.5) else (None, None)
        except EOFError:  # it exited without saying done: a crash (a signal, the device, os._exit)
            proc.join(5)
            job.update(status="error", error=f"the process died (exit code {proc.exitcode})")
            break
        if kind is None:
            if time.time() > start + budget_s:
                job.update(status="timeout", error=f"stopped at its time budget of {budget_s:.0f} s")
                break
            continue
        if kind == "row":
            job["rows"].append(payload)
            continue
        if kind == "done":
            job["status"] = "ok"
        else:
            job.update(status="error", **payload)
        break
    if proc.is_alive():
        proc.terminate()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    proc.join(5)
    receive.close()
    job["seconds"] = time.time() - start
    return job


def run_gpu_bench(plan: GpuBenchPlan, progress: bool = True) -> dict[str, Any]:
    """Run every part of ``plan`` in turn; returns the results document (see ``write_results``)."""
    import platform

    import torch

    started, t0 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), time.time()
    device_name = torch.cuda.get_device_name(plan.device) if plan.device.startswith("cuda") else platform.processor() or "cpu"
    total = sum(plan.budgets.values())
    results: dict[str, Any] = {"schema": 1, "smoke": plan.smoke, "device": plan.device, "device_name": device_name,
                               "torch": torch.__version__, "cuda": torch.version.cuda, "started": started,
                               "plan": dataclasses.asdict(plan), "parts": {}}
    for part in PARTS:
        jobs, left = plan.jobs(part), plan.budgets[part]
        record: dict[str, Any] = {"title": TITLES[part], "budget_s": left, "jobs": []}
        for i, kwargs in enumerate(jobs):
            # jobs of a part share its budget; no part may run past the total
            budget = min(left / (len(jobs) - i), total - (time.time() - t0))
            if budget < 5:
                record["jobs"].append({**kwargs, "status": "skipped", "error": "no time left", "rows": []})
                continue
            job = run_job(JOB_FUNCTIONS[part], plan, kwargs, budget)
            left -= job["seconds"]
            record["jobs"].append(job)
        statuses = {j["status"] for j in record["jobs"]} | {r.get("status") for j in record["jobs"] for r in j["rows"]}
        record["status"] = "ok" if statuses == {"ok"} else ("failed" if "ok" not in statuses else "partial")
        record["rows"] = [r for j in record["jobs"] for r in j["rows"]]
        record["seconds"] = sum(j.get("seconds", 0.0) for j in record["jobs"])
        results["parts"][part] = record
        if progress:
            print(f"{TITLES[part]}: {record['status']} in {record['seconds']:.0f} s", flush=True)
    results["seconds"] = time.time() - t0
    return results
