"""``matchdetr train | eval | demo``: training, scoring a checkpoint or a results file, and the demo."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import ConfigError, apply_overrides
from .common import DEVICE_HELP, add_data_args
from .errors import nonneg_int, positive_int
from .paths import checkpoint_path, dataset_path, input_path, output_dir


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a preset on a COCO-format dataset",
                       description="Train a preset. Launch with torchrun for several processes or nodes. A new run "
                                   "goes into an empty or new --out; continue one with --resume, or start over in "
                                   "its folder with --exist-ok.")
    p.add_argument("--model", help="preset name (see `matchdetr models`); optional with --init (default: the "
                                    "checkpoint's own configuration)")
    p.add_argument("--init", help="start from this checkpoint's weights (file or run directory; fresh optimizer and "
                                  "schedule); class heads are re-initialised where the dataset's class names differ")
    add_data_args(p, ("train", "val"))
    p.add_argument("--out", required=True, help="run directory (checkpoints, metrics.jsonl, results.csv, eval/)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--iters", type=positive_int, help="train for this many iterations (default: the preset's)")
    g.add_argument("--epochs", type=positive_int, help="train for this many epochs instead of iterations")
    p.add_argument("--batch-size", type=positive_int, help="images per process (default: the preset's)")
    p.add_argument("--seed", type=int, help="seed of the weights, augmentation and batch order (default: the preset's)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    r = p.add_mutually_exclusive_group()
    r.add_argument("--resume", action="store_true", help="continue the run in --out from its newest complete checkpoint")
    r.add_argument("--exist-ok", action="store_true",
                   help="start over in an --out that holds another run: that run's files (config.json, metrics.jsonl, "
                        "results.csv, model.safetensors, checkpoints/, eval/, ...) are deleted first; other files stay")
    p.add_argument("--no-val", action="store_true", help="skip evaluation")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="typed config override, e.g. --set model.transformer.num_queries=100 (repeatable)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar: a plain line every train.log_every iterations (also without a terminal)")
    p.set_defaults(func=cmd_train)


def _train_config(a: argparse.Namespace):  # -> Config
    from .. import presets

    if a.model:
        cfg = presets.get(a.model)
    elif getattr(a, "init", None):  # fine-tune the checkpoint's own architecture
        from ..config import Config
        from ..engine.checkpoint import newest_weights, read_meta

        cfg = Config.from_dict(read_meta(newest_weights(a.init))["config"])
        cfg.model.backbone.weights = ""  # the backbone comes from the checkpoint
    else:
        raise ConfigError("train needs --model PRESET (or --init CHECKPOINT to reuse its configuration)")
    if getattr(a, "init", None):
        cfg.train.init = a.init
    apply_overrides(cfg, a.overrides)
    if a.iters is not None:
        cfg.train.iters = a.iters
        if cfg.train.lr_drop >= a.iters and "train.lr_drop" not in " ".join(a.overrides):
            cfg.train.lr_drop = int(a.iters * 0.8)  # keep the drop inside a shortened schedule
    if a.epochs is not None:
        cfg.train.epochs, cfg.train.iters = a.epochs, 0
    if a.batch_size is not None:
        cfg.train.batch_size = a.batch_size
    if a.seed is not None:
        cfg.train.seed = a.seed
    return cfg


def cmd_train(a: argparse.Namespace) -> int:
    from ..data.coco import resolve_split
    from ..engine import distributed as dist
    from ..engine.train import train

    cfg = _train_config(a)
    train_paths = resolve_split(a.data, "train", a.train_images, a.train_ann)
    val_paths = None if a.no_val else resolve_split(a.data, "val", a.val_images, a.val_ann)
    result = train(cfg, train_paths, val_paths, a.out, device=a.device, resume=a.resume, progress=not a.no_progress,
                   exist_ok=a.exist_ok)
    if dist.is_main():
        if result.evaluation is not None:
            print(result.evaluation.table())
        print(f"trained {result.iterations} iterations in {result.seconds / 60:.1f} min; run directory: {result.run_dir}")
    dist.cleanup()
    return 0


# What `eval --out` writes (engine/coco_eval.py, reports/report.py); with --checkpoint results.json too, which
# no input of that form can be, while `--predictions DIR/results.json --out DIR` (rescoring) must stay allowed.
EVAL_WRITES = ("metrics.json", "pr_curves.npz", "per_class_ap.csv", "per_class_ap.png", "per_class_segm_ap.png",
               "pr_curves.png")


def add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score a checkpoint, or a COCO results file without a model",
                       description="COCO bbox evaluation (AP in percent, per-class AP). An unreadable image is "
                                   "reported and scored as an image without detections.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=checkpoint_path, help="checkpoint file (.safetensors) or run directory")
    src.add_argument("--predictions", type=input_path, help="COCO results JSON to score")
    add_data_args(p, ("val",))
    p.add_argument("--split", default="val", help="which split of --data to score")
    p.add_argument("--out", type=output_dir(*EVAL_WRITES),
                   help="folder for metrics.json, results.json, per-class AP and PR curves (default: print only)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="images per forward pass")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--workers", type=nonneg_int, default=2, help="DataLoader worker processes (0: load in the main process)")
    p.set_defaults(func=cmd_eval)


def cmd_eval(a: argparse.Namespace) -> int:
    from ..data.coco import resolve_split

    if a.out:
        from ..io.out_paths import output_dir

        output_dir(a.out)  # before the evaluation, not after it
    paths = resolve_split(a.data, a.split, a.val_images, a.val_ann)
    if a.predictions:
        from ..data.formats import ground_truth
        from ..engine.coco_eval import evaluate_detections

        result = evaluate_detections(ground_truth(paths), a.predictions, out_dir=a.out)
    else:
        from .. import api
        from ..engine.distributed import init_from_env
        from ..engine.evaluate import evaluate

        device = init_from_env(a.device)
        model = api.load(a.checkpoint, map_location=device)
        result = evaluate(model, api.eval_split(model, paths), device, batch_size=a.batch_size, num_workers=a.workers, out_dir=a.out)
    if result is not None:
        print(result.table())
        if a.out:
            from ..reports.report import write_eval_report

            written = write_eval_report(result, a.out)
            print(f"wrote {Path(a.out) / 'metrics.json'}" + "".join(f", {p.name}" for p in written))
    return 0


def add_demo(sub: argparse._SubParsersAction) -> None:
    from ..presets import DEFAULT_TINY

    p = sub.add_parser("demo", help="generate the synthetic data, train the default tiny preset, evaluate, plot")
    p.add_argument("--model", default=DEFAULT_TINY, help="preset to train")
    p.add_argument("--data", type=dataset_path, default="runs/synthetic", help="dataset folder (generated when missing)")
    p.add_argument("--out", type=output_dir(), default="runs/demo",
                   help="the demo's run directory: continued when it holds a checkpoint, else started over")
    p.add_argument("--iters", type=positive_int, help="override the preset's iteration count")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=cmd_demo)


def cmd_demo(a: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(model=a.model, data=a.data, out=a.out, iters=a.iters, device=a.device)
