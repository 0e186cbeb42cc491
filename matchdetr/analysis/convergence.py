"""``matchdetr bench convergence``: several presets trained on the same data at the same budget, seed and batch,
evaluated at fixed intervals; AP curves, a final COCO table and the per-layer unstable score of each model.

Models run one after another, each in ``OUT/<preset>/`` (a normal run directory). Re-running the same command
resumes: finished models are read back from their ``bench.json``, a partly trained one continues from its
newest complete checkpoint.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..io.files import atomic_write_text, read_jsonl
from .errors import ErrorBreakdown
from .variants import model_config
from ..engine.unstable_score import UnstableScore

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


@dataclass
class ModelRun:
    """What one preset produced: its eval curve ``[(iteration, metrics)]``, final metrics, wall minutes of
    the training session that finished it, the unstable score of the final weights, and their error breakdown
    (``analysis/errors.py``: percent of the val GTs found, and of those named right, by area range)."""

    preset: str
    curve: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    final: dict[str, float] = field(default_factory=dict)
    minutes: float = 0.0
    unstable: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, Any] = field(default_factory=dict)


def read_curve(run_dir: Path) -> list[tuple[int, dict[str, float]]]:
    """Every ``type: eval`` record of ``metrics.jsonl`` as ``(iteration, metrics)``, last one per iteration."""
    by_iter = {int(r["iter"]): {k: r.get(k) for k in METRICS}
               for r in read_jsonl(run_dir / "metrics.jsonl")[0] if r.get("type") == "eval"}
    return sorted(by_iter.items())


def run_one(preset: str, data: Path, out: Path, iters: int, eval_every: int, batch_size: int, seed: int,
            overrides: list[str], device: str, unstable_images: int) -> ModelRun:
    """Train (or resume, or read back) one preset; score its unstable matching and break its errors down.

    A finished run read back without an error breakdown (written before it existed) gets one, from its saved
    weights, without training again."""
    from .. import api
    from ..config import apply_overrides
    from ..data.coco import resolve_split
    from ..engine.distributed import init_from_env
    from ..compose import build_matcher
    from .errors import model_error_breakdown
    from ..engine.unstable_score import unstable_score

    run_dir = out / preset
    done = run_dir / "bench.json"
    val_paths = resolve_split(data, "val")
    if done.exists():
        run = ModelRun(**json.loads(done.read_text()))
        if not run.errors:
            dev = init_from_env(device)
            model = api.load(run_dir, map_location=dev)
            run.errors = _errors(model_error_breakdown(model, api.eval_split(model, val_paths), dev, progress=False),
                                 run_dir)
            atomic_write_text(done, json.dumps(asdict(run), indent=2))
        return run
    cfg = model_config(preset)
    t = cfg.train
    # the study's budget; the drop at 80 % of it, as every tiny preset has it
    t.iters, t.batch_size, t.seed, t.eval_every = iters, batch_size, seed, eval_every
    t.lr_drop, t.checkpoint_every = int(iters * 0.8), eval_every
    apply_overrides(api.train_config(cfg, data), overrides)
    start = time.time()
    # The benchmark owns its run directories: continue one that has a checkpoint, else start it over.
    result = api.train(cfg, out=run_dir, device=device, resume=True, exist_ok=True)
    minutes = (time.time() - start) / 60  # of this session: a resumed run counts the time after resuming
    dev = init_from_env(device)
    model = api.load(run_dir, map_location=dev)
    val = api.eval_split(model, val_paths)
    score: UnstableScore = unstable_score(model.module, val, build_matcher(model.config.model), dev, unstable_images)
    score.write(run_dir / "unstable")
    errors = _errors(_final_errors(model, val, dev, run_dir), run_dir)
    run = ModelRun(preset, read_curve(run_dir), dict(result.evaluation.metrics) if result.evaluation else {},
                   round(minutes, 2), asdict(score), errors)
    atomic_write_text(done, json.dumps(asdict(run), indent=2))  # its presence marks the model finished
    return run


def _final_errors(model: Any, val: Any, device: Any, run_dir: Path) -> ErrorBreakdown:
    """The error breakdown of the final weights, from the detections the trainer's final evaluation just wrote
    (``RUN/eval/results.json``: the same model, images and top-k, so the same detections; it saves predicting
    the validation split a second time) where that evaluation kept every top-k detection (threshold 0), in
    full precision, batched as the breakdown batches (padding moves detections); otherwise by predicting again."""
    from .errors import PREDICT_BATCH, error_breakdown, model_error_breakdown

    t = model.config.train
    saved = run_dir / "eval" / "results.json"
    if t.eval_threshold > 0 or t.amp != "none" or t.batch_size != PREDICT_BATCH or not saved.exists():
        return model_error_breakdown(model, val, device, progress=False)
    coco_gt = val.coco_gt if isinstance(val.coco_gt, dict) else json.loads(Path(val.coco_gt).read_text())
    return error_breakdown(json.loads(saved.read_text()), coco_gt, 0.5, model.config.model.postprocess.topk,
                           image_ids=val.image_ids)


def found_named(run: ModelRun) -> list[str]:
    """The error breakdown's found % and named % over all areas, as table cells ("-" where there is none)."""
    row = next((r for r in run.errors.get("rows", []) if r["area"] == "all"), {})
    return ["-" if row.get(k) is None else f"{row[k]:.1f}" for k in ("found", "named")]


def _errors(result: ErrorBreakdown, run_dir: Path) -> dict[str, Any]:
    """Write ``RUN/errors/errors.json`` and return the breakdown as stored in ``bench.json``."""
    result.write(run_dir / "errors")
    return asdict(result)


def write_outputs(runs: list[ModelRun], out: Path, title: str = "Convergence on the synthetic benchmark") -> list[Path]:
    """curves.csv / curves.png, table.md, unstable.csv / unstable.png."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "curves.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["preset", "iter", *METRICS])
        for r in runs:
            for it, m in r.curve:
                w.writerow([r.preset, it, *(m.get(k) for k in METRICS)])
    lines = ["| preset | " + " | ".join(METRICS) + " | found % | named % | minutes |", "|---" * (len(METRICS) + 4) + "|"]
    for r in runs:
        vals = " | ".join("-" if r.final.get(k) is None else f"{r.final[k]:.2f}" for k in METRICS)
        lines.append(f"| `{r.preset}` | {vals} | {' | '.join(found_named(r))} | {r.minutes:.1f} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    with open(out / "unstable.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["preset", "layer", "unstable_score"])
        for r in runs:
            for layer, s in zip(r.unstable.get("layers", []), r.unstable.get("scores", [])):
                w.writerow([r.preset, layer, f"{s:.4f}"])
    _plot(runs, out, title)
    return [out / n for n in ("curves.csv", "curves.png", "table.md", "unstable.csv", "unstable.png")]


def _plot(runs: list[ModelRun], out: Path, title: str) -> None:
    from ..reports.report import figure, save_figure

    fig = figure((6.4, 4.2))
    ax = fig.add_subplot()
    for r in runs:
        ax.plot([it for it, _ in r.curve], [m.get("AP") or 0.0 for _, m in r.curve], marker="o", label=r.preset)
    ax.set(xlabel="iteration", ylabel="bbox AP (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, out / "curves.png")
    fig = figure((6.4, 4.2))
    ax = fig.add_subplot()
    for r in runs:
        ax.plot(r.unstable.get("layers", []), r.unstable.get("scores", []), marker="s", label=r.preset)
    ax.set(xlabel="decoder layer l (matching of l-1 vs l)", ylabel="unstable score (%)",
           title=f"Unstable score of the final weights: {title}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, out / "unstable.png")


def run_benchmark(models: list[str], data: str, out: str, iters: int, eval_every: int, batch_size: int, seed: int,
                  overrides: list[str] | None = None, device: str = "auto", unstable_images: int = 20) -> list[ModelRun]:
    """Run every preset in turn (resuming), then write the combined outputs; returns the runs."""
    from ..data.synthetic import generate

    for name in models:
        model_config(name)  # unknown names fail before any training
    if iters < 1 or eval_every < 1:
        raise ValueError(f"--iters and --eval-every must be >= 1, got {iters} and {eval_every}")
    data_dir, out_dir = Path(data), Path(out)
    if not (data_dir / "annotations" / "instances_val.json").exists():
        print(f"generating the synthetic dataset in {data_dir} ...")
        generate(data_dir, workers=2)
    runs = []
    for i, name in enumerate(models, 1):
        print(f"[{i}/{len(models)}] {name}: {iters} iterations, batch {batch_size}, seed {seed}")
        runs.append(run_one(name, data_dir, out_dir, iters, eval_every, batch_size, seed, overrides or [], device,
                            unstable_images))
        write_outputs(runs, out_dir)  # partial results stay readable while later models train
    return runs
