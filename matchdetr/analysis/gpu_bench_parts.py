"""The measurements of ``matchdetr bench gpu``, each run in its own spawned process (``gpu_bench.py``).

Every job gets the plan (a dict of :class:`~matchdetr.analysis.gpu_bench.GpuBenchPlan` fields), its own
arguments and ``emit(row)``, which sends a finished row to the parent at once: a job killed at its time budget
still leaves the rows it finished. A job checks its deadline between measurements and skips what no longer
fits rather than starting it.
"""

from __future__ import annotations

import math
import resource
import statistics
import time
from contextlib import nullcontext
from typing import Any, Callable

import torch

Emit = Callable[[dict[str, Any]], None]


# ------------------------------------------------------------------------------------------------ helpers
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float:
    """CUDA: peak allocated since the last reset; CPU: the process's peak resident set (never reset)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _times_ms(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int, deadline: float) -> list[float]:
    """Wall times of ``repeats`` calls after ``warmup`` ones; fewer (at least one) when the deadline comes."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    while len(times) < repeats and (not times or time.time() < deadline):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1000)
    return times


def _autocast(device: torch.device, amp: str) -> Any:
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp == "bf16" else nullcontext()


def _model(plan: dict[str, Any], preset: str, device: torch.device, dtype: torch.dtype = torch.float32,
           extra: list[str] | tuple[str, ...] = ()) -> Any:
    from .. import api
    from ..config import apply_overrides

    torch.manual_seed(0)
    cfg = apply_overrides(api.build_config(preset, plan["num_classes"]), [*plan["overrides"], *extra])
    return api.from_config(cfg).to(device=device, dtype=dtype)


def _targets(batch: int, size: tuple[int, int], num_classes: int, device: torch.device) -> list[Any]:
    from ..structures import Target

    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(batch):
        boxes = torch.cat((torch.rand(6, 2, generator=g) * 0.6 + 0.2, torch.rand(6, 2, generator=g) * 0.3 + 0.05), 1)
        labels = torch.randint(0, num_classes, (6,), generator=g)
        out.append(Target(boxes.to(device), labels.to(device), i, tuple(size), tuple(size)))
    return out


def _images(batch: int, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(1)).to(device)


# -------------------------------------------------------------------------------------------- (a) training
def train_step(plan: dict[str, Any], emit: Emit, deadline: float, preset: str,
               modes: tuple[str, ...] = ("eager", "compiled"), overrides: tuple[str, ...] = (),
               checkpointing: bool = False) -> None:
    """Median training step (forward under autocast, criterion, backward, AdamW) in each of ``modes`` (eager,
    then compiled); ``checkpointing``: every encoder and decoder layer recomputed in the backward pass
    (``train.checkpoint_activations``), with ``overrides`` on top of the plan's."""
    from ..compose import build_criterion
    from ..engine.compile import compile_model
    from ..models.layers import set_activation_checkpointing

    device, size, batch = torch.device(plan["device"]), tuple(plan["train_size"]), plan["train_batch"]
    model = _model(plan, preset, device, extra=overrides).train()
    if checkpointing:
        set_activation_checkpointing(model.module, True)
    criterion = build_criterion(model.config.model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    images, targets = _images(batch, size, device), _targets(batch, size, plan["num_classes"], device)
    losses: list[float] = []

    def step() -> None:
        with _autocast(device, plan["amp"]):
            out = model(images, None, targets)
        loss = criterion(out, targets).total  # outside autocast, as the trainer does
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())

    for mode in modes:
        row: dict[str, Any] = {"preset": preset, "mode": mode, "size": list(size), "batch": batch, "amp": plan["amp"]}
        if checkpointing:
            row["checkpointing"] = True
        compile_s = None
        if mode == "compiled":
            if not compile_model(model, device, backend=plan["compile_backend"]):
                emit(row | {"status": "error", "error": "torch.compile unavailable here (see the warning)"})
                return
            _sync(device)
            start = time.perf_counter()
            step()  # the first call compiles forward and backward
            _sync(device)
            compile_s = time.perf_counter() - start
        _reset_peak(device)
        times = _times_ms(step, device, plan["warmup"], plan["repeats"], deadline)
        row |= {"status": "ok", "ms": statistics.median(times), "runs": len(times), "peak_mem_mib": _peak_mib(device),
                "last_loss": float(losses[-1])}
        if compile_s is not None:
            row |= {"compile_s": compile_s, "backend": plan["compile_backend"]}
        emit(row)


# ------------------------------------------------------------------------------------------- (b) inference
def inference(plan: dict[str, Any], emit: Emit, deadline: float, preset: str) -> None:
    """Batch-1 latency at each size, float32 and under bf16 autocast."""
    device = torch.device(plan["device"])
    model = _model(plan, preset, device).eval()
    for size in plan["infer_sizes"]:
        x = _images(1, tuple(size), device)
        for amp in ("none", "bf16"):
            if time.time() > deadline:
                emit({"preset": preset, "size": list(size), "amp": amp, "status": "skipped", "error": "time budget spent"})
                continue

            def infer() -> None:
                with torch.no_grad(), _autocast(device, amp):
                    model(x)

            _reset_peak(device)
            times = _times_ms(infer, device, plan["warmup"], plan["repeats"], deadline)
            ms = statistics.median(times)
            emit({"preset": preset, "size": list(size), "amp": amp, "status": "ok", "ms": ms, "images_per_s": 1000 / ms,
                  "runs": len(times), "peak_mem_mib": _peak_mib(device)})


# ------------------------------------------------------------------------------------ (c) deformable attention
def encoder_inputs(size: tuple[int, int], batch: int, heads: int = 8, head_dim: int = 32, points: int = 4,
                   strides: tuple[int, ...] = (8, 16, 32, 64), device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32, queries: int | None = None) -> list[torch.Tensor]:
    """Deformable-attention inputs of a 4-level encoder on a ``size`` image: every position queries (S = Q)
    unless ``queries`` is given. [value, spatial_shapes, level_start, sampling_locations, attention_weights]."""
    g = torch.Generator().manual_seed(0)
    hw = [(math.ceil(size[0] / s), math.ceil(size[1] / s)) for s in strides]
    s = sum(h * w for h, w in hw)
    q = s if queries is None else queries
    shapes = torch.tensor(hw, dtype=torch.long)
    starts = torch.cat((shapes.new_zeros(1), (shapes[:, 0] * shapes[:, 1]).cumsum(0)[:-1]))
    value = torch.randn(batch, s, heads, head_dim, generator=g, dtype=torch.float64)
    loc = torch.rand(batch, q, heads, len(hw), points, 2, generator=g, dtype=torch.float64) * 1.1 - 0.05
    weights = torch.rand(batch, q, heads, len(hw) * points, generator=g, dtype=torch.float64).softmax(-1)
    weights = weights.view(batch, q, heads, len(hw), points)
    return [t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device)
            for t in (value, shapes, starts, loc, weights)]


def deform_attn(plan: dict[str, Any], emit: Emit, deadline: float) -> None:
    """ms_deform_attn against the stacked textbook formulation, forward and forward + backward."""
    from ..ops.ms_deform_attn import ms_deform_attn
    from ..ops.ms_deform_attn_stacked import ms_deform_attn_stacked

    device, size, batch = torch.device(plan["device"]), tuple(plan["train_size"]), plan["train_batch"]
    args = encoder_inputs(size, batch, device=device)
    shape = {"size": list(size), "batch": batch, "queries": int(args[0].shape[1]), "heads": 8, "head_dim": 32,
             "levels": 4, "points": 4}
    for impl, fn in (("ms_deform_attn", ms_deform_attn), ("stacked reference", ms_deform_attn_stacked)):
        for passes in ("forward", "forward+backward"):
            leaves = [t.detach().requires_grad_(passes != "forward" and t.is_floating_point()) for t in args]

            def run() -> None:
                with torch.set_grad_enabled(passes != "forward"):
                    out = fn(*leaves)
                    if passes != "forward":
                        out.sum().backward()

            _reset_peak(device)
            times = _times_ms(run, device, plan["warmup"], plan["repeats"], deadline)
            emit({"impl": impl, "pass": passes, "status": "ok", "ms": statistics.median(times), "runs": len(times),
                  "peak_mem_mib": _peak_mib(device), **shape})

