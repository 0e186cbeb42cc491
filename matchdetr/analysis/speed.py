"""``matchdetr bench speed``: inference latency, training-step time and peak memory of a preset, optionally
beside its HF transformers twin on identical weights.

How it measures, and why: the two implementations run in **interleaved pairs**. Each model lives in
its own spawned worker process (so its peak memory is its own: the process's peak resident set on CPUs, CUDA
peak allocated memory on GPUs), the workers are warmed up, and then the coordinator asks them in turn for one
timed run each, alternating which one goes first (ABBA), so that a slow spell of the machine (another process,
the host stealing CPU time, thermal state) lands on both sides of a pair. The ratio ours / HF is taken per pair
and its median, minimum and maximum are reported: the spread says how far one figure can be trusted.
Timing each model's repeats back to back in separate runs, as this command did before, let the machine's drift
between the two runs enter the ratio (0.53 one day, 0.72 the next on the same code).

``one_process=True`` runs both models in this process instead, interleaved the same way: the check that the
ratio is not an artefact of process isolation (thread pools, allocator state). Peak memory cannot be told
apart there and is not reported.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

IMPLS = {"ours": "matchdetr", "hf": "HF transformers"}


@dataclass
class SpeedResult:
    """One implementation's timings (milliseconds, every timed run in order) and its peak memory (MiB)."""

    impl: str
    infer_runs: list[float]
    train_runs: list[float]
    peak_mem_mb: float | None = None

    @property
    def infer_ms(self) -> float:
        return statistics.median(self.infer_runs)

    @property
    def train_ms(self) -> float:
        return statistics.median(self.train_runs)


@dataclass
class Spread:
    """The per-pair ratios ours / HF of one quantity."""

    ratios: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    def text(self) -> str:
        if len(self.ratios) == 1:
            return f"{self.ratios[0]:.2f}"
        return f"{self.median:.2f} ({min(self.ratios):.2f}-{max(self.ratios):.2f})"


def pair_ratios(rows: list[SpeedResult]) -> dict[str, Spread]:
    """Inference and training-step ratios ours / HF of every interleaved pair (rows: ours first, HF second)."""
    a, b = rows
    return {"infer": Spread([x / y for x, y in zip(a.infer_runs, b.infer_runs)]),
            "train": Spread([x / y for x, y in zip(a.train_runs, b.train_runs)])}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _targets(batch: int, num_classes: int, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(batch):
        n = 6
        boxes = torch.cat((torch.rand(n, 2, generator=g) * 0.6 + 0.2, torch.rand(n, 2, generator=g) * 0.3 + 0.05), 1)
        out.append((boxes.to(device), torch.randint(0, num_classes, (n,), generator=g).to(device)))
    return out


def _build(preset: str, impl: str, vs_hf: bool, overrides: list[str] | None) -> Any:
    """Our detector (``impl == 'ours'``) or HF's twin (``'hf'``). With ``vs_hf`` both sides start from HF's
    initialisation under seed 0, copied into ours, so the two compute the same function."""
    from .. import api
    from ..config import apply_overrides

    from ..models.layers import set_activation_checkpointing

    torch.manual_seed(0)
    cfg = apply_overrides(api.build_config(preset, 91), overrides)
    ours = api.from_config(cfg)
    set_activation_checkpointing(ours, cfg.train.checkpoint_activations)  # as the trainer does
    if not vs_hf:
        return ours
    from .hf_twin import hf_twin

    hf = hf_twin(ours)
    if impl == "ours":
        del hf
        gc.collect()
        return ours
    del ours
    gc.collect()
    return hf


class _Runner:
    """One implementation ready to time: ``run('infer' | 'train')`` returns the milliseconds of one call."""

    def __init__(self, preset: str, impl: str, vs_hf: bool, device: torch.device, size: tuple[int, int],
                 overrides: list[str] | None) -> None:
        from ..compose import build_criterion
        from ..structures import Target

        self.device, self.impl = device, impl
        model = _build(preset, impl, vs_hf, overrides).to(device)
        h, w = size
        torch.manual_seed(1)
        x1 = torch.randn(1, 3, h, w, device=device)
        x2 = torch.randn(2, 3, h, w, device=device)
        tg = _targets(2, 91, device)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        if impl == "ours":
            crit = build_criterion(model.config.model)
            targets = [Target(b, lab, i, (h, w), (h, w)) for i, (b, lab) in enumerate(tg)]

            def infer() -> None:
                model(x1)

            def loss() -> torch.Tensor:
                return crit(model(x2, None, targets), targets).total
        else:
            mask1 = torch.ones(1, h, w, dtype=torch.long, device=device)
            mask2 = torch.ones(2, h, w, dtype=torch.long, device=device)
            labels = [{"class_labels": lab, "boxes": b} for b, lab in tg]

            def infer() -> None:
                model(pixel_values=x1, pixel_mask=mask1)

            def loss() -> torch.Tensor:
                return model(pixel_values=x2, pixel_mask=mask2, labels=labels).loss

        def train() -> None:
            value = loss()
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()

        self.model, self._fns = model, {"infer": infer, "train": train}

    def run(self, kind: str) -> float:
        """One timed call: inference in eval mode under ``inference_mode``, or one optimiser step in train mode."""
        if kind == "infer":
            self.model.eval()
            ctx: Any = torch.inference_mode()
        else:
            self.model.train()
            ctx = torch.enable_grad()
        _sync(self.device)
        t = time.perf_counter()
        with ctx:
            self._fns[kind]()
        _sync(self.device)
        return (time.perf_counter() - t) * 1000

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _worker(conn: Any, threads: int, *args: Any) -> None:
    """A spawned process serving one ``_Runner``: receives ``'infer' | 'train' | 'peak'``, answers, until None."""
    torch.set_num_threads(threads)
    try:
        runner = _Runner(*args)
        conn.send(("ready", None))
        while (cmd := conn.recv()) is not None:
            conn.send(("ok", runner.peak_mb() if cmd == "peak" else runner.run(cmd)))
    except Exception as err:  # reported by the coordinator with the implementation's name
        conn.send(("error", f"{type(err).__name__}: {err}"))


class _Remote:
    """The coordinator's handle of one worker process."""

    def __init__(self, ctx: Any, impl: str, threads: int, *args: Any) -> None:
        self.impl = impl
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, threads, *args), daemon=True)
        self.proc.start()
        self._answer()

    def _answer(self) -> Any:
        if not self.conn.poll(3600):
            raise RuntimeError(f"speed measurement ({IMPLS[self.impl]}) did not answer within an hour")
        try:
            status, value = self.conn.recv()
        except EOFError:
            self.proc.join()
            raise RuntimeError(f"speed measurement ({IMPLS[self.impl]}) died with exit code "
                               f"{self.proc.exitcode}") from None
        if status == "error":
            raise RuntimeError(f"speed measurement ({IMPLS[self.impl]}) failed: {value}")
        return value

    def run(self, kind: str) -> float:
        self.conn.send(kind)
        return self._answer()

    def peak_mb(self) -> float:
        return self.run("peak")

    def close(self) -> None:
        if self.proc.is_alive():
            self.conn.send(None)
        self.proc.join(timeout=30)
        if self.proc.is_alive():
            self.proc.kill()


def _interleave(runners: list[Any], kind: str, warmup: int, repeats: int) -> list[list[float]]:
    """Warm every runner up, then time them in turn, ``repeats`` pairs, alternating who goes first (ABBA)."""
    for _ in range(warmup):
        for r in runners:
            r.run(kind)
    times: list[list[float]] = [[] for _ in runners]
    for i in range(repeats):
        order = range(len(runners)) if i % 2 == 0 else reversed(range(len(runners)))
        for j in order:
            times[j].append(runners[j].run(kind))
    return times


def bench_speed(preset: str, vs_hf: bool = False, device: str = "auto", size: tuple[int, int] = (640, 640),
                warmup: int = 2, repeats: int = 5, overrides: list[str] | None = None,
                one_process: bool = False, threads: int | None = None) -> list[SpeedResult]:
    """Time ``preset`` (and its HF twin) in interleaved pairs; one row per implementation, ours first.

    ``repeats`` timed pairs after ``warmup`` untimed ones, for inference (batch 1) and then the training step
    (batch 2). ``threads``: intra-op threads of each model (default: this process's)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    threads = threads or torch.get_num_threads()
    impls = ["ours", "hf"] if vs_hf else ["ours"]
    runners: list[Any]
    if one_process:
        saved = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            runners = [_Runner(preset, impl, vs_hf, dev, size, overrides) for impl in impls]
            times = {k: _interleave(runners, k, warmup, repeats) for k in ("infer", "train")}
        finally:
            torch.set_num_threads(saved)
        return [SpeedResult(IMPLS[impl], times["infer"][j], times["train"][j]) for j, impl in enumerate(impls)]
    ctx = mp.get_context("spawn")
    runners = []
    try:
        for impl in impls:
            runners.append(_Remote(ctx, impl, threads, preset, impl, vs_hf, dev, size, overrides))
        times = {k: _interleave(runners, k, warmup, repeats) for k in ("infer", "train")}
        peaks = [r.peak_mb() for r in runners]
    finally:
        for r in runners:
            r.close()
    return [SpeedResult(IMPLS[impl], times["infer"][j], times["train"][j], peaks[j]) for j, impl in enumerate(impls)]


def _mem(row: SpeedResult) -> str:
    return "-" if row.peak_mem_mb is None else f"{row.peak_mem_mb:.0f}"


def _mem_ratio(rows: list[SpeedResult]) -> str:
    a, b = rows
    return "-" if a.peak_mem_mb is None or b.peak_mem_mb is None else f"{a.peak_mem_mb / b.peak_mem_mb:.2f}"


def format_table(preset: str, rows: list[SpeedResult], device: str, size: tuple[int, int]) -> str:
    """The terminal table: medians, and for a pair the per-pair ratio's median (min-max)."""
    n = len(rows[0].infer_runs)
    lines = [f"{preset} at {size[0]}x{size[1]} on {device} (inference batch 1, training step batch 2; medians of "
             f"{n} interleaved runs)",
             f"{'implementation':18s} {'inference ms':>16s} {'train step ms':>16s} {'peak MiB':>9s}"]
    for r in rows:
        lines.append(f"{r.impl:18s} {r.infer_ms:16.1f} {r.train_ms:16.1f} {_mem(r):>9s}")
    if len(rows) == 2:
        s = pair_ratios(rows)
        lines.append(f"{'ratio ours/HF':18s} {s['infer'].text():>16s} {s['train'].text():>16s} {_mem_ratio(rows):>9s}")
        lines.append(f"(ratios: median of the {n} per-pair ratios, their min-max in brackets)")
    return "\n".join(lines)


def markdown_table(rows: list[SpeedResult]) -> str:
    """The rows (and the per-pair ratio ours / HF, median and min-max, when both were measured) as markdown."""
    lines = ["| implementation | inference (ms) | training step (ms) | peak memory (MiB) |", "|---|---|---|---|"]
    lines += [f"| {r.impl} | {r.infer_ms:.0f} | {r.train_ms:.0f} | {_mem(r)} |" for r in rows]
    if len(rows) == 2:
        s = pair_ratios(rows)
        lines.append(f"| **ratio ours / HF** (per pair: median, min-max) | **{s['infer'].text()}** | "
                     f"**{s['train'].text()}** | {_mem_ratio(rows)} |")
    return "\n".join(lines)


def docs_block(device: str = "auto", runner: Callable[..., list[SpeedResult]] = bench_speed) -> dict[str, str]:
    """The ``bench:speed-hf`` block of docs/benchmarks.md (``matchdetr bench docs --only speed``): the
    two-process interleaved measurement, and the same in one process as the check of it."""
    from .studies import machine

    two = runner("deformable-detr-r50", vs_hf=True, device=device, repeats=5)
    one = runner("deformable-detr-r50", vs_hf=True, device=device, repeats=5, one_process=True)
    return {"speed-hf": f"`matchdetr bench docs --only speed` = `matchdetr bench speed --model deformable-detr-r50 "
                        f"--vs-hf` and the same with `--one-process` ({machine()}; 640x640, inference batch 1, "
                        f"training step batch 2; 5 interleaved pairs after 2 warm-up runs each).\n\n"
                        f"Each model in its own process:\n\n{markdown_table(two)}\n\n"
                        f"Both models in one process (peak memory cannot be told apart there):\n\n"
                        f"{markdown_table(one)}"}


if __name__ == "__main__":  # pragma: no cover - convenience
    print(format_table(sys.argv[1], bench_speed(sys.argv[1], vs_hf=True), "cpu", (640, 640)))
