"""``matchdetr bench gpu``: the GPU session's measurements in one command (``analysis/gpu_bench.py``)."""

from __future__ import annotations

import argparse
import time

from .common import DEVICE_HELP
from .paths import output_dir


def add_bench_gpu(bsub: argparse._SubParsersAction) -> None:
    g = bsub.add_parser("gpu", help="everything a GPU session measures, in at most 8 minutes: training step eager "
                                    "and compiled, inference latency, the deformable-attention op, parity, bf16 run",
                        description="Training step of stable-dino-4scale-r50 and sam-detr-plus-plus-r50 at 800x1333, "
                                    "batch 2, bf16, eager and compiled; batch-1 inference at 640x640 and 800x1333; "
                                    "the deformable-attention op against its stacked reference; device-vs-float64-CPU "
                                    "parity of every op and one forward; a 50-iteration bf16 training run. Each part "
                                    "runs in its own process with a time budget; a failure is recorded and the rest "
                                    "runs. Writes gpu_bench.json and gpu_bench.md to --out and prints the table.")
    g.add_argument("--out", type=output_dir(),
                   help="folder for gpu_bench.json / gpu_bench.md; must not hold an earlier bench's "
                        "(default: a new runs/bench_gpu/<UTC time> folder)")
    g.add_argument("--smoke", action="store_true", help="the same code path on the CPU in about a minute: tiny "
                                                        "presets, micro sizes, 2 timed iterations")
    g.add_argument("--device", default="auto", help=DEVICE_HELP + "; without --smoke it must be a CUDA device")
    g.set_defaults(func=cmd_bench_gpu)


def cmd_bench_gpu(a: argparse.Namespace) -> int:
    from ..analysis.gpu_bench import GpuBenchPlan, run_gpu_bench
    from ..analysis.gpu_bench_report import markdown, prepare_out, write_results
    from ..engine.device import DeviceError, resolve_device

    device = resolve_device(a.device)  # one line for an absent or malformed device, before any work
    if not a.smoke and not device.startswith("cuda"):
        raise DeviceError(f"bench gpu: needs a CUDA device, and --device {a.device} gives {device} here; "
                          "--smoke runs the reduced form on the CPU")
    out = prepare_out(a.out or f"runs/bench_gpu/{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
    plan = GpuBenchPlan.smoke_plan(device) if a.smoke else GpuBenchPlan.full(device)
    plan.work_dir = str(out)
    results = run_gpu_bench(plan)
    paths = write_results(results, out)
    print(markdown(results))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
