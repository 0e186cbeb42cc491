"""``matchdetr bench speed | convergence | docs | gpu``: the benchmarks behind docs/benchmarks.md (gpu: ``bench_gpu.py``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import nonneg_int, positive_int
from .paths import dataset_path, in_place_path, output_dir


# ----------------------------------------------------------------------------------------------- bench
def add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks: speed and convergence",
                       description="The measurements behind docs/benchmarks.md: `speed` (latency, training step and "
                                   "memory of a preset, optionally against HF transformers), `convergence` (presets "
                                   "trained at equal budget), `docs` (regenerate every table and plot of that page), "
                                   "`profile` (the training step timed phase by phase) and `gpu` (a GPU session's "
                                   "measurements in one command).")
    bsub = p.add_subparsers(dest="bench", required=True, metavar="{speed,convergence,docs,profile,gpu}")
    from ..analysis.studies import STUDIES
    from .bench_gpu import add_bench_gpu

    c = bsub.add_parser("convergence", help="train presets at equal budget: AP curves, COCO table, unstable score",
                        description="Train each preset in turn on the same data, budget, seed and batch; evaluate every "
                                    "--eval-every iterations. Writes curves.csv/png, table.md and unstable.csv/png to "
                                    "--out, and the same per study to --out/<study>/. Re-running the same command "
                                    "resumes a partly finished benchmark.")
    c.add_argument("--models", help="comma-separated presets (default: every preset of the chosen studies)")
    c.add_argument("--study", help=f"comma-separated studies (default: those marked default): {', '.join(STUDIES)}")
    _add_convergence_args(c)
    c.set_defaults(func=cmd_bench_convergence)
    d = bsub.add_parser("docs", help="regenerate the tables and plots of docs/benchmarks.md",
                        description="Run the benchmarks behind docs/benchmarks.md and write each result between its "
                                    "'<!-- bench:KEY -->' markers there: convergence (every study at the default "
                                    "budget; resumable), flops (parameters and GFLOPs beside the papers') and speed "
                                    "(deformable-detr-r50 against HF transformers).")
    d.add_argument("--only", default="convergence,flops,speed", help="comma-separated parts")
    d.add_argument("--doc", type=in_place_path, default="docs/benchmarks.md",
                   help="the markdown file whose bench:KEY blocks are rewritten")
    d.add_argument("--study", help=f"comma-separated studies of the convergence part (default: all): {', '.join(STUDIES)}")
    _add_convergence_args(d)
    d.set_defaults(func=cmd_bench_docs)
    _add_speed(bsub)
    f = bsub.add_parser("profile", help="where a training iteration's time goes, phase by phase",
                        description="Run the trainer's own step on the training split and time every phase: data "
                                    "wait, the backbone's frozen and trained blocks, neck, encoder, fusion, query "
                                    "selection, denoising, decoder, head, matching (and its Hungarian calls), each "
                                    "loss, backward, optimizer; then one iteration under torch.profiler charges the "
                                    "backward to the forward part that made it. Medians; run it alone on the machine.")
    f.add_argument("--model", default="stable-dino-tiny,dino-tiny,sam-detr-tiny,detr-tiny",
                   help="comma-separated presets")
    f.add_argument("--data", type=dataset_path, default="runs/synthetic",
                   help="dataset folder; the synthetic set is generated if missing")
    f.add_argument("--iters", type=positive_int, default=12, help="timed iterations")
    f.add_argument("--warmup", type=nonneg_int, default=3, help="untimed iterations first")
    f.add_argument("--batch-size", type=positive_int, default=8, help="images per step")
    f.add_argument("--workers", type=nonneg_int, help="DataLoader workers (default: the preset's)")
    f.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N | mps")
    f.add_argument("--out", type=output_dir("profile.md"), help="also write profile.md here")
    f.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override of every preset")
    f.set_defaults(func=cmd_bench_profile)
    add_bench_gpu(bsub)


def _add_speed(bsub: argparse._SubParsersAction) -> None:
    s = bsub.add_parser("speed", help="inference latency, training-step time and peak memory of a preset",
                        description="Time a preset's batch-1 inference and one training step (median of --repeats "
                                    "after --warmup runs) and its peak memory, each model in its own process; "
                                    "--vs-hf also times HF transformers' Deformable-DETR on the same weights and "
                                    "reports the ratio.")
    s.add_argument("--model", required=True, help="preset name")
    s.add_argument("--vs-hf", action="store_true", help="also time HF transformers' twin on identical weights")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    s.add_argument("--size", default="640x640", help="HxW of the input image")
    s.add_argument("--warmup", type=nonneg_int, default=2, help="untimed runs first")
    s.add_argument("--repeats", type=positive_int, default=5,
                   help="timed runs of each (with --vs-hf: interleaved pairs; the median ratio and its spread are reported)")
    s.add_argument("--one-process", action="store_true",
                   help="run both models in this process (the check of the two-process figures; no peak memory)")
    s.add_argument("--threads", type=positive_int, help="intra-op threads of each model (default: torch's)")
    s.add_argument("--infer-only", action="store_true",
                   help="time inference only (no training step, so the peak memory is inference's)")
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override of the preset (HF's twin is built from the same config)")
    s.set_defaults(func=cmd_bench_speed)


def _add_convergence_args(c: argparse.ArgumentParser) -> None:
    from ..analysis.studies import DEFAULT_EVAL_EVERY, DEFAULT_ITERS

    c.add_argument("--iters", type=positive_int, default=DEFAULT_ITERS, help="iterations per model")
    c.add_argument("--eval-every", type=positive_int, default=DEFAULT_EVAL_EVERY, help="iterations between evaluations")
    c.add_argument("--batch-size", type=positive_int, default=8, help="images per step")
    c.add_argument("--seed", type=int, default=42, help="seed of every run")
    c.add_argument("--data", type=dataset_path, default="runs/synthetic",
                   help="dataset folder; the synthetic set is generated if missing")
    c.add_argument("--out", type=output_dir(), default="runs/bench_convergence", help="where the trained runs go")
    c.add_argument("--unstable-images", type=positive_int, default=20, help="validation images of the unstable score")
    c.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override applied to every model")


def _convergence(a: argparse.Namespace, studies: list[str] | None) -> list:
    from ..analysis.convergence import run_benchmark
    from ..analysis.studies import study_models

    models = ([m.strip() for m in a.models.split(",") if m.strip()] if getattr(a, "models", None)
              else study_models(studies))
    return run_benchmark(models, a.data, a.out, a.iters, a.eval_every, a.batch_size, a.seed, a.overrides, a.device,
                         a.unstable_images)


def cmd_bench_convergence(a: argparse.Namespace) -> int:
    from ..analysis.convergence import write_outputs
    from ..analysis.studies import write_study_outputs

    studies = [s.strip() for s in a.study.split(",") if s.strip()] if a.study else None
    runs = _convergence(a, studies)
    paths = write_outputs(runs, Path(a.out)) + write_study_outputs(runs, Path(a.out), studies)
    print(Path(a.out, "table.md").read_text())
    print(f"{len(runs)} presets, {sum(r.minutes for r in runs):.1f} min in all")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def cmd_bench_docs(a: argparse.Namespace) -> int:
    from ..analysis import studies

    doc = Path(a.doc)
    figures = doc.parent / "benchmarks"

    def convergence() -> dict[str, str]:
        budget = f"{a.iters} iterations at batch {a.batch_size}, evaluated every {a.eval_every}, seed {a.seed}"
        chosen = [s.strip() for s in a.study.split(",") if s.strip()] if a.study else list(studies.STUDIES)
        return studies.convergence_blocks(_convergence(a, chosen), Path(a.out), figures,
                                          "matchdetr bench docs --only convergence", budget)

    parts = [p.strip() for p in a.only.split(",") if p.strip()]
    from ..analysis.flops import docs_block as flops
    from ..analysis.speed import docs_block as speed

    written = studies.run_docs(parts, doc, {"convergence": convergence, "flops": flops,
                                            "speed": lambda: speed(a.device)})
    print(f"updated {doc}: {', '.join(written)}")
    return 0


def cmd_bench_speed(a: argparse.Namespace) -> int:
    from ..analysis.speed import bench_speed, format_table

    try:
        h, w = (int(v) for v in a.size.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must look like 640x640, got {a.size!r}") from None
    rows = bench_speed(a.model, vs_hf=a.vs_hf, device=a.device, size=(h, w), warmup=a.warmup, repeats=a.repeats,
                       overrides=a.overrides, one_process=a.one_process, threads=a.threads,
                       infer_only=a.infer_only)
    device = a.device if a.device != "auto" else ("cuda" if __import__("torch").cuda.is_available() else "cpu")
    print(format_table(a.model, rows, device, (h, w)))
    return 0


def cmd_bench_profile(a: argparse.Namespace) -> int:
    from ..analysis.profile import profile_training, report
    from ..data.synthetic import generate

    if not (Path(a.data) / "annotations" / "instances_train.json").exists() and not Path(a.data).exists():
        print(f"generating the synthetic dataset in {a.data} ...")
        generate(Path(a.data), workers=2)
    models = [m.strip() for m in a.model.split(",") if m.strip()]
    profiles = [profile_training(m, a.data, a.iters, a.warmup, a.batch_size, a.overrides, a.device, a.workers)
                for m in models]
    text = report(profiles)
    print(text)
    if a.out:
        from ..io.files import atomic_write_text
        from ..io.out_paths import output_dir

        atomic_write_text(output_dir(a.out) / "profile.md", text)
    return 0
