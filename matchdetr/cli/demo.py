"""``matchdetr demo``: synthetic data -> train the default tiny preset on the CPU -> evaluate -> plots."""

from __future__ import annotations

import time
from pathlib import Path

from .. import api, presets


def run_demo(model: str = presets.DEFAULT_TINY, data: str = "runs/synthetic", out: str = "runs/demo",
             iters: int | None = None, device: str = "auto") -> int:
    from ..data.synthetic import generate
    from ..reports.val_predictions import IMAGES, THRESHOLD, TOP
    from ..reports.visualize import plot_training_curves

    start = time.time()
    data_dir, out_dir = Path(data), Path(out)
    if not (data_dir / "annotations" / "instances_val.json").exists():
        print(f"[1/4] generating the synthetic dataset in {data_dir} ...")
        generate(data_dir, workers=2)
    else:
        print(f"[1/4] using the synthetic dataset in {data_dir}")
    cfg = api.train_config(presets.get(model), data_dir, iters=iters)
    print(f"[2/4] training {model} for {cfg.train.iters} iterations (batch {cfg.train.batch_size}) -> {out_dir}")
    # Re-running the demo continues (or just re-evaluates) an earlier run instead of starting over; a demo
    # directory without a checkpoint (stopped before its first) is the demo's own, and starts over. Training
    # also draws predictions.png (reports/val_predictions.py).
    result = api.train(cfg, out=out_dir, device=device, resume=True, exist_ok=True)

    print("[3/4] evaluation on the validation split")
    if result.evaluation is not None:
        print(result.evaluation.table())
    print("[4/4] training curves")
    curves = out_dir / "training_curves.png"
    plot_training_curves(out_dir / "metrics.jsonl", curves)

    ap = result.evaluation.metrics["AP"] if result.evaluation is not None else float("nan")
    print(f"\ndone in {(time.time() - start) / 60:.1f} min: bbox AP {ap:.1f} on the validation split")
    print(f"  run directory   {out_dir}/ (config.json, metrics.jsonl, checkpoints/, eval/)")
    print(f"  weights         {out_dir / 'model.safetensors'}  (matchdetr.load('{out_dir}')); the best evaluation's "
          f"in {out_dir / 'best.safetensors'}")
    print(f"  training curves {curves}")
    print(f"  predictions     {out_dir / 'predictions.png'}  (the first {IMAGES} validation images, top {TOP} per "
          f"image above score {THRESHOLD}; ground truth dashed)")
    print(f"  metrics         {out_dir / 'eval' / 'metrics.json'}")
    return 0
