"""Where a training iteration's time goes (``matchdetr bench profile``): the trainer's own step on a real data
loader, broken down by phase, measured two ways.

- **Wall time per phase** (no profiler, hooks only; what a user's run spends): waiting for the data, the
  forward parts (the backbone's frozen and trained blocks, neck + encoder + fusion, query selection, denoising,
  decoder, head), the criterion (matching, with the count of Hungarian calls, and each loss), backward with the
  guard's checks, the optimizer step. Medians over the timed iterations.
- **Backward by module** (with ``torch.profiler``, one iteration): each backward node is charged to the forward
  part that created it (autograd sequence numbers), and the count of operators per iteration.

Thread settings (torch intra-op / inter-op threads, DataLoader workers, cores) are reported beside.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

PARTS = ("backbone", "neck", "encoder", "fusion", "queries", "decoder", "head")


@dataclass
class StepProfile:
    """preset, batch, median wall ms per phase, backward ms by part (profiled), operator counts, threads."""

    preset: str
    batch_size: int
    iterations: int
    phases: dict[str, float] = field(default_factory=dict)  # median ms per iteration
    backward_by_part: dict[str, float] = field(default_factory=dict)  # ms in the profiled iteration
    ops_forward: int = 0
    ops_backward: int = 0
    hungarian_calls: float = 0.0
    threads: dict[str, int] = field(default_factory=dict)

    @property
    def step_ms(self) -> float:
        return self.phases.get("iteration", 0.0)

    def table(self) -> str:
        """A markdown table: phase, ms, share of the iteration."""
        total = self.step_ms or 1.0
        rows = [f"| phase | ms | share |", "|---|---|---|"]
        rows += [f"| {k} | {v:.1f} | {100 * v / total:.1f} % |" for k, v in self.phases.items() if k != "iteration"]
        rows.append(f"| **iteration** | **{total:.1f}** | 100 % |")
        return "\n".join(rows)


class _Clock:
    """Accumulates wall time per name within one iteration."""

    def __init__(self) -> None:
        self.now: dict[str, float] = defaultdict(float)
        self.starts: dict[str, float] = {}

    @contextmanager
    def time(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.now[name] += (time.perf_counter() - start) * 1000

    def hook_module(self, module: nn.Module, name: str) -> list[Any]:
        def pre(*_: Any) -> None:
            self.starts[name] = time.perf_counter()

        def post(*_: Any) -> None:
            self.now[name] += (time.perf_counter() - self.starts.pop(name)) * 1000

        return [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]

    def wrap(self, owner: Any, attr: str, name: str) -> Callable[[], None]:
        """Time every call of ``owner.attr`` (a function or a callable object, whose other attributes stay
        visible) as ``name``; returns the undo."""
        real = getattr(owner, attr)
        setattr(owner, attr, _Timed(real, self, name))
        return lambda: setattr(owner, attr, real)


class _Timed:
    """A callable that times its calls on a clock and otherwise looks like the one it wraps."""

    def __init__(self, real: Any, clock: _Clock, name: str) -> None:
        self._real, self._clock, self._name = real, clock, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._clock.time(self._name):
            return self._real(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._real, attr)


def _backbone_blocks(backbone: nn.Module) -> list[tuple[nn.Module, bool]]:
    """The backbone's leaf-level blocks with whether they are frozen (no trainable parameter): EfficientNet-Lite's
    stem and MBConv blocks, ResNet's stem and stages' blocks."""
    body = getattr(backbone, "body", backbone)
    blocks: list[nn.Module] = []
    for name, child in body.named_children():
        if isinstance(child, (nn.ModuleList, nn.Sequential)) and name not in ("conv1",):
            blocks += list(child)
        elif any(True for _ in child.parameters()):
            blocks.append(child)
    return [(b, not any(p.requires_grad for p in b.parameters())) for b in blocks]


def _instrument(trainer: Any, clock: _Clock, calls: list[int]) -> ExitStack:
    """Hooks and wrappers on the trainer's model and criterion; closed by the returned stack."""
    from ..matching import hungarian
    from ..models.plugins import denoising

    stack = ExitStack()
    model = trainer.model
    handles = []
    for part in PARTS:
        handles += clock.hook_module(getattr(model, part), part)
    for block, frozen in _backbone_blocks(model.backbone):
        handles += clock.hook_module(block, "backbone (frozen blocks)" if frozen else "backbone (trained blocks)")
    stack.callback(lambda: [h.remove() for h in handles])
    crit = trainer.step.criterion
    stack.callback(clock.wrap(crit, "matcher", "matching"))
    stack.callback(clock.wrap(crit, "class_loss", "loss: class"))
    if crit.dn_class_loss is not crit.class_loss:
        stack.callback(clock.wrap(crit, "dn_class_loss", "loss: class (denoising sets)"))
    stack.callback(clock.wrap(crit, "box_loss", "loss: boxes"))
    if crit.mask_loss is not None:
        stack.callback(clock.wrap(crit, "mask_loss", "loss: masks"))
    stack.callback(clock.wrap(denoising, "build_denoising", "denoising"))
    stack.callback(clock.wrap(trainer.optimizer, "step", "optimizer"))
    real_lsa = hungarian.linear_sum_assignment

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real_lsa(*args, **kwargs)

    hungarian.linear_sum_assignment = counted
    stack.callback(lambda: setattr(hungarian, "linear_sum_assignment", real_lsa))
    return stack


def _phases(clock: _Clock, step_ms: float, data_ms: float) -> dict[str, float]:
    """One iteration's phases, the nested ones as their own share (queries less denoising, etc.)."""
    n = clock.now
    forward = sum(n[p] for p in PARTS)
    criterion = n["matching"] + sum(v for k, v in n.items() if k.startswith("loss: "))
    out = {"data wait": data_ms,
           "backbone: frozen blocks": n["backbone (frozen blocks)"],
           "backbone: trained blocks": n["backbone (trained blocks)"],
           "backbone: rest": max(n["backbone"] - n["backbone (frozen blocks)"] - n["backbone (trained blocks)"], 0.0),
           "neck": n["neck"], "encoder": n["encoder"], "fusion": n["fusion"],
           "query selection": max(n["queries"] - n["denoising"], 0.0), "denoising": n["denoising"],
           "decoder": n["decoder"], "head": n["head"], "matching": n["matching"]}
    out.update({k: v for k, v in n.items() if k.startswith("loss: ")})
    out["optimizer"] = n["optimizer"]
    out["backward + guard + logging"] = max(step_ms - forward - criterion - n["optimizer"], 0.0)
    return out


def _backward_by_part(trainer: Any, batch: Any, iteration: int) -> tuple[dict[str, float], int, int]:
    """One iteration under torch.profiler: backward ms charged to the forward part that created each node, and
    the forward / backward operator counts."""
    from torch.autograd.profiler import record_function

    model = trainer.model
    contexts: dict[str, Any] = {}
    handles = []
    for part in PARTS:
        def pre(*_: Any, part: str = part) -> None:
            contexts[part] = record_function(f"part::{part}")
            contexts[part].__enter__()

        def post(*_: Any, part: str = part) -> None:
            contexts.pop(part).__exit__(None, None, None)

        handles += [getattr(model, part).register_forward_pre_hook(pre), getattr(model, part).register_forward_hook(post)]
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            trainer.step(batch, iteration)
    finally:
        for h in handles:
            h.remove()
    events = prof.events()
    seq_part: dict[int, str] = {}
    for e in events:
        if e.sequence_nr >= 0 and not e.name.startswith("autograd::engine"):
            parent, part = e.cpu_parent, None
            while parent is not None and part is None:
                part = parent.name[len("part::"):] if parent.name.startswith("part::") else None
                parent = parent.cpu_parent
            seq_part.setdefault(e.sequence_nr, part or "criterion")
    by_part: dict[str, float] = defaultdict(float)
    backward = [e for e in events if e.name.startswith("autograd::engine::evaluate_function")]
    for e in backward:
        by_part[seq_part.get(e.sequence_nr, "criterion")] += e.cpu_time_total / 1000
    forward_ops = sum(1 for e in events if e.name.startswith("aten::") and e.cpu_parent is not None
                      and not e.name.startswith("aten::empty"))
    return dict(sorted(by_part.items(), key=lambda kv: -kv[1])), forward_ops, len(backward)


def profile_training(preset: str, data: str | os.PathLike, iters: int = 12, warmup: int = 3, batch_size: int = 8,
                     overrides: list[str] | None = None, device: str = "cpu", workers: int | None = None) -> StepProfile:
    """Profile ``iters`` training iterations of ``preset`` on ``data`` (after ``warmup`` untimed ones)."""
    from .. import presets
    from ..config import apply_overrides, train_config
    from ..engine.train import Trainer

    cfg = train_config(presets.get(preset), data, iters=warmup + iters + 1, batch_size=batch_size)
    if workers is not None:
        cfg.data.num_workers = workers
    apply_overrides(cfg, overrides or [])
    with tempfile.TemporaryDirectory(prefix="matchdetr-profile-") as out:
        trainer = Trainer(cfg, Path(out) / "run", device=device, progress=False, val=False)
        trainer.model.train()
        loader = trainer._loader(0, 0)
        clock, calls = _Clock(), [0]
        rows: list[dict[str, float]] = []
        hungarian: list[int] = []
        with _instrument(trainer, clock, calls):
            for it in range(warmup + iters):
                clock.now.clear()
                calls[0] = 0
                start = time.perf_counter()
                batch = next(loader).to(trainer.device)
                data_ms = (time.perf_counter() - start) * 1000
                trainer.step(batch, it)
                step_ms = (time.perf_counter() - start) * 1000 - data_ms
                if it >= warmup:
                    rows.append({**_phases(clock, step_ms, data_ms), "iteration": step_ms + data_ms})
                    hungarian.append(calls[0])
        by_part, ops_f, ops_b = _backward_by_part(trainer, next(loader).to(trainer.device), warmup + iters)
    phases = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    threads = {"torch intra-op": torch.get_num_threads(), "torch inter-op": torch.get_num_interop_threads(),
               "DataLoader workers": cfg.data.num_workers, "cores": os.cpu_count() or 0}
    return StepProfile(preset, batch_size, iters, phases, by_part, ops_f, ops_b, statistics.median(hungarian), threads)


def report(profiles: list[StepProfile]) -> str:
    """Markdown: one table per preset (phases; backward by part; counts) for docs/benchmarks.md."""
    parts = []
    for p in profiles:
        backward = ", ".join(f"{k} {v:.0f}" for k, v in p.backward_by_part.items())
        threads = ", ".join(f"{k} {v}" for k, v in p.threads.items())
        parts.append(f"**{p.preset}**, batch {p.batch_size}, median of {p.iterations} iterations\n\n{p.table()}\n\n"
                     f"Backward by part (ms, one profiled iteration): {backward}. Operators per iteration: "
                     f"{p.ops_forward} forward, {p.ops_backward} backward nodes. Hungarian calls per iteration: "
                     f"{p.hungarian_calls:.0f}. Threads: {threads}.\n")
    return "\n".join(parts)
