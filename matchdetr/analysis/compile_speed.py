"""Eager against ``torch.compile`` (inductor) inference of one preset, in one process, interleaved.

    python -m matchdetr.analysis.compile_speed --model stable-dino-tiny --size 256x256 --repeats 15

Two copies of the model with the same weights; every repeat times one eager and one compiled call in turn, so
load from other processes on a shared machine falls on both alike. Prints the compile time (the first call),
both medians and their ratio, and the largest output difference.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def compare(preset: str, size: tuple[int, int], repeats: int = 15, warmup: int = 3,
            num_classes: int = 91) -> dict[str, float]:
    """``{compile_s, eager_ms, compiled_ms, speedup, max_abs_diff}`` for batch-1 inference on the CPU."""
    from .. import build
    from ..engine.compile import compile_model

    torch.manual_seed(0)
    eager = build(preset, num_classes=num_classes).eval()
    compiled = build(preset, num_classes=num_classes).eval()
    compiled.load_state_dict(eager.state_dict())
    if not compile_model(compiled):
        raise RuntimeError("torch.compile is unavailable here (see the warning)")
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        start = time.perf_counter()
        out = compiled(x)
        compile_s = time.perf_counter() - start
        diff = max(float((out.logits - eager(x).logits).abs().max()), float((out.boxes - eager(x).boxes).abs().max()))
        times: dict[str, list[float]] = {"eager": [], "compiled": []}
        for i in range(warmup + repeats):
            for name, model in (("eager", eager), ("compiled", compiled)):
                start = time.perf_counter()
                model(x)
                if i >= warmup:
                    times[name].append((time.perf_counter() - start) * 1000)
    eager_ms, compiled_ms = statistics.median(times["eager"]), statistics.median(times["compiled"])
    return {"compile_s": compile_s, "eager_ms": eager_ms, "compiled_ms": compiled_ms,
            "speedup": eager_ms / compiled_ms, "max_abs_diff": diff}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="stable-dino-tiny")
    p.add_argument("--size", default="256x256", help="HxW")
    p.add_argument("--repeats", type=int, default=15)
    a = p.parse_args()
    h, w = (int(v) for v in a.size.lower().split("x"))
    r = compare(a.model, (h, w), a.repeats)
    print(f"| {a.model} | {h}x{w} | {torch.get_num_threads()} | {r['compile_s']:.0f} | {r['eager_ms']:.1f} | "
          f"{r['compiled_ms']:.1f} | {r['speedup']:.2f}x | {r['max_abs_diff']:.1e} |")


if __name__ == "__main__":
    main()
