"""``matchdetr bench speed``: inference latency, training-step time and peak memory of a preset, optionally
beside its HF transformers twin on identical weights.

Each model is measured in a fresh process (spawned), so its peak memory is its own: CUDA peak allocated
memory on GPUs, the process's peak resident set on CPUs. Times are medians after warm-up.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass
class SpeedResult:
    impl: str
    infer_ms: float
    train_ms: float
    peak_mem_mb: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn: Any, device: torch.device, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def _targets(batch: int, num_classes: int, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(batch):
        n = 6
        boxes = torch.cat((torch.rand(n, 2, generator=g) * 0.6 + 0.2, torch.rand(n, 2, generator=g) * 0.3 + 0.05), 1)
        out.append((boxes.to(device), torch.randint(0, num_classes, (n,), generator=g).to(device)))
    return out


def _build_pair(preset: str, impl: str, vs_hf: bool, device: torch.device,
                overrides: list[str] | None = None) -> tuple[Any, Any]:
    """Our detector, and HF's twin when impl == 'hf'. With ``vs_hf`` both processes copy the twin's weights
    into ours (same seed), so the two sides run identical weights. ``overrides``: ``key=value`` config changes."""
    from .. import api
    from ..config import apply_overrides

    ours = api.from_config(apply_overrides(api.build_config(preset, 91), overrides))
    hf = None
    if vs_hf:
        from .hf_twin import hf_twin

        hf = hf_twin(ours)
    return (ours.to(device), None) if impl == "ours" else (ours, hf.to(device))


def _measure(preset: str, impl: str, vs_hf: bool, device_name: str, size: tuple[int, int], warmup: int, repeats: int,
             q: Any, overrides: list[str] | None = None) -> None:
    from ..compose import build_criterion
    from ..structures import Target

    torch.manual_seed(0)
    device = torch.device(device_name)
    ours, hf = _build_pair(preset, impl, vs_hf, device, overrides)
    model = ours if hf is None else hf
    h, w = size
    x1 = torch.randn(1, 3, h, w, device=device)
    x2 = torch.randn(2, 3, h, w, device=device)
    tg = _targets(2, 91, device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    if hf is None:
        crit = build_criterion(ours.config.model)
        targets = [Target(b, l, i, (h, w), (h, w)) for i, (b, l) in enumerate(tg)]

        def infer() -> None:
            with torch.no_grad():
                model(x1)

        def train() -> None:
            loss = crit(model(x2, None, targets), targets).total
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    else:
        mask1 = torch.ones(1, h, w, dtype=torch.long, device=device)
        mask2 = torch.ones(2, h, w, dtype=torch.long, device=device)
        labels = [{"class_labels": l, "boxes": b} for b, l in tg]

        def infer() -> None:
            with torch.no_grad():
                model(pixel_values=x1, pixel_mask=mask1)

        def train() -> None:
            loss = model(pixel_values=x2, pixel_mask=mask2, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    model.eval()
    infer_ms = _median_ms(infer, device, warmup, repeats)
    model.train()
    train_ms = _median_ms(train, device, warmup, repeats)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    q.put(asdict(SpeedResult("HF transformers" if hf is not None else "matchdetr", infer_ms, train_ms, peak)))


def bench_speed(preset: str, vs_hf: bool = False, device: str = "auto", size: tuple[int, int] = (640, 640),
                warmup: int = 2, repeats: int = 5, overrides: list[str] | None = None) -> list[SpeedResult]:
    """Measure ``preset`` (and its HF twin) in separate spawned processes; returns one row per implementation."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    ctx = mp.get_context("spawn")
    rows = []
    for impl in (["ours", "hf"] if vs_hf else ["ours"]):
        q = ctx.Queue()
        p = ctx.Process(target=_measure, args=(preset, impl, vs_hf, device, size, warmup, repeats, q, overrides))
        p.start()
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"speed measurement of {preset} ({impl}) failed with exit code {p.exitcode}")
        rows.append(SpeedResult(**q.get()))
    return rows


def format_table(preset: str, rows: list[SpeedResult], device: str, size: tuple[int, int]) -> str:
    lines = [f"{preset} at {size[0]}x{size[1]} on {device} (inference batch 1, training step batch 2; medians)",
             f"{'implementation':18s} {'inference ms':>13s} {'train step ms':>14s} {'peak MiB':>9s}"]
    for r in rows:
        lines.append(f"{r.impl:18s} {r.infer_ms:13.1f} {r.train_ms:14.1f} {r.peak_mem_mb:9.0f}")
    if len(rows) == 2:
        a, b = rows
        lines.append(f"{'ratio ours/HF':18s} {a.infer_ms / b.infer_ms:13.2f} {a.train_ms / b.train_ms:14.2f} {a.peak_mem_mb / b.peak_mem_mb:9.2f}")
    return "\n".join(lines)


def markdown_table(rows: list[SpeedResult]) -> str:
    """The rows (and the ratio ours / HF when both were measured) as a markdown table."""
    lines = ["| implementation | inference (ms) | training step (ms) | peak memory (MiB) |", "|---|---|---|---|"]
    lines += [f"| {r.impl} | {r.infer_ms:.0f} | {r.train_ms:.0f} | {r.peak_mem_mb:.0f} |" for r in rows]
    if len(rows) == 2:
        a, b = rows
        lines.append(f"| **ratio ours / HF** | **{a.infer_ms / b.infer_ms:.2f}** | **{a.train_ms / b.train_ms:.2f}** | "
                     f"{a.peak_mem_mb / b.peak_mem_mb:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - convenience
    print(format_table(sys.argv[1], bench_speed(sys.argv[1], vs_hf=True), "cpu", (640, 640)))


def docs_block(device: str = "auto") -> dict[str, str]:
    """The ``bench:speed-hf`` block of docs/benchmarks.md (``matchdetr bench docs --only speed``)."""
    from .studies import machine

    rows = bench_speed("deformable-detr-r50", vs_hf=True, device=device)
    return {"speed-hf": f"`matchdetr bench docs --only speed` = `matchdetr bench speed --model deformable-detr-r50 "
                        f"--vs-hf` ({machine()}; 640x640, inference batch 1, training step batch 2, "
                        f"medians of 5 after 2 warm-up runs, one process each).\n\n{markdown_table(rows)}"}
