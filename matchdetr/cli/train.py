"""``matchdetr train | eval | demo``: training, scoring a checkpoint or a results file, and the demo."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config.tree import ConfigError
from .common import DEVICE_HELP, add_data_args
from .errors import nonneg_int, positive_int, probability
from ..engine.run_dir import RUN_FILES
from .paths import checkpoint_path, dataset_path, input_path, output_dir


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a preset (boxes or instance masks) on a COCO, YOLO or VOC dataset",
                       description="Train a preset (or a saved config) on a COCO, YOLO or Pascal VOC dataset. Launch "
                                   "with torchrun for several processes or nodes. A new run goes into an empty or new "
                                   "--out; continue one with --resume (alone: `train --out RUN --resume`), or start "
                                   "over in its folder with --exist-ok. Every recipe value is a config key: "
                                   "`matchdetr models --show PRESET` lists them with their meaning, --set changes one.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", help="preset name (see `matchdetr models`)")
    src.add_argument("--config", type=input_path, help="a config file: a run's config.json, or a JSON/YAML of some keys on top of "
                                      "its `preset:` (see docs/training.md)")
    p.add_argument("--init", type=checkpoint_path, help="start from this checkpoint's weights (file or run directory; fresh optimizer and "
                                  "schedule); without --model/--config its configuration too; class heads are "
                                  "re-initialised where the dataset's class names differ")
    add_data_args(p, ("train", "val"))
    p.add_argument("--out", required=True, type=output_dir(*RUN_FILES),
                   help="run directory (checkpoints, metrics.jsonl, results.csv, eval/)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--iters", type=positive_int, help="train for this many iterations (default: the preset's); the "
                                                      "learning-rate drop keeps its place in the schedule")
    g.add_argument("--epochs", type=positive_int, help="train for this many epochs instead of iterations")
    p.add_argument("--batch-size", type=positive_int, help="images per process (default: the preset's)")
    p.add_argument("--seed", type=int, help="seed of the weights, augmentation and batch order (default: the preset's)")
    p.add_argument("--workers", type=nonneg_int, help="DataLoader worker processes (default: the preset's, "
                                                      "data.num_workers)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    r = p.add_mutually_exclusive_group()
    r.add_argument("--resume", action="store_true", help="continue the run in --out from its newest complete checkpoint")
    r.add_argument("--exist-ok", action="store_true",
                   help="start over in an --out that holds another run: that run's files (config.json, metrics.jsonl, "
                        "results.csv, model.safetensors, checkpoints/, eval/, ...) are deleted first; other files stay")
    p.add_argument("--no-val", action="store_true", help="skip evaluation")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="typed config override, e.g. --set train.lr=2e-4 or --set model.loss.class_loss=varifocal "
                        "(repeatable; applied last)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar: a plain line every train.log_every iterations (also without a terminal)")
    p.set_defaults(func=cmd_train)


def _base_config(a: argparse.Namespace):  # -> Config
    """The config the options start from: --config, --model, --init's own, or (with --resume alone) the run's."""
    from .. import presets
    from ..config.files import read_config_file

    if a.config:
        return read_config_file(a.config)
    if a.model:
        return presets.get(a.model)
    if a.init:  # fine-tune the checkpoint's own architecture
        from ..config import Config
        from ..engine.checkpoint import newest_weights, read_meta

        cfg = Config.from_dict(read_meta(newest_weights(a.init))["config"])
        cfg.model.backbone.weights = None  # the backbone comes from the checkpoint
        return cfg
    if a.resume:
        from ..engine.run_dir import saved_config

        return saved_config(a.out)
    raise ConfigError("train needs --model PRESET, --config FILE, --init CHECKPOINT, or --resume of a run in --out")


def _train_config(a: argparse.Namespace):  # -> Config
    """Base config, then the options in the config's own rules (--iters moves the learning-rate drop with the
    schedule), then every --set (explicit keys win)."""
    from ..config import apply_overrides, train_config

    cfg = _base_config(a)
    if a.init:
        cfg.train.init = a.init
    splits = {"train_images": a.train_images, "train_annotations": a.train_ann, "val_images": a.val_images,
              "val_annotations": a.val_ann}
    for key, value in splits.items():
        if value:
            setattr(cfg.data, key, str(Path(value).resolve()))
    train_config(cfg, a.data, a.iters, a.epochs, a.batch_size)
    if a.seed is not None:
        cfg.train.seed = a.seed
    if a.workers is not None:
        cfg.data.num_workers = a.workers
    return apply_overrides(cfg, a.overrides)


def cmd_train(a: argparse.Namespace) -> int:
    from .. import api
    from ..data.summary import report_splits
    from ..engine import distributed as dist

    cfg = _train_config(a)
    report_splits(cfg.data, ("train",) if a.no_val else ("train", "val"))  # what was found, before any training
    result = api.train(cfg, out=a.out, device=a.device, resume=a.resume, progress=not a.no_progress,
                       exist_ok=a.exist_ok, val=not a.no_val)
    if dist.is_main():
        if result.evaluation is not None:
            print(result.evaluation.table())
        print(f"trained {result.iterations} iterations in {result.seconds / 60:.1f} min; run directory: {result.run_dir} "
              f"(model.safetensors: the last weights{', best.safetensors, predictions.png' if not a.no_val else ''})")
    dist.cleanup()
    return 0


# What `eval --out` writes (engine/coco_eval.py, reports/report.py); with --checkpoint results.json too, which
# no input of that form can be, while `--predictions DIR/results.json --out DIR` (rescoring) must stay allowed.
EVAL_WRITES = ("metrics.json", "pr_curves.npz", "per_class_ap.csv", "per_class_ap.png", "per_class_segm_ap.png",
               "pr_curves.png", "confusion.npz", "confusion_matrix.png", "confusion_matrix.csv")


def add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score a checkpoint, or a COCO results file without a model",
                       description="COCO evaluation of boxes, and of masks for an instance-segmentation model or a "
                                   "results file with segmentations (AP in percent; mask metrics as segm_AP ...; "
                                   "per-class AP; mask size ranges by mask area, as detectron2). COCO, YOLO and VOC "
                                   "datasets, each summarised in one line first. An unreadable image is reported and "
                                   "scored as an image without detections.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=checkpoint_path, help="checkpoint file (.safetensors) or run directory")
    src.add_argument("--predictions", type=input_path, help="COCO results JSON to score")
    add_data_args(p, ("val",))
    p.add_argument("--split", default="val", help="which split of --data to score")
    p.add_argument("--iou-type", choices=["bbox", "segm", "both"],
                   help="with --predictions: score boxes, masks or both (default: what every entry of the file holds)")
    p.add_argument("--out", type=output_dir(*EVAL_WRITES),
                   help="folder for metrics.json, results.json, per-class AP, PR curves and the confusion matrix "
                        "(default: print only)")
    p.add_argument("--batch-size", type=positive_int, default=8,
                   help="images per forward pass (the scores do not depend on it)")
    p.add_argument("--conf", type=probability, default=0.25,
                   help="score threshold of the confusion matrix and the per-class precision / recall (IoU 0.5)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--workers", type=nonneg_int, default=2, help="DataLoader worker processes (0: load in the main process)")
    p.set_defaults(func=cmd_eval)


def cmd_eval(a: argparse.Namespace) -> int:
    from ..data.coco import resolve_split
    from ..data.summary import report_paths

    if a.iou_type and not a.predictions:
        raise ValueError("eval: --iou-type is for --predictions; a checkpoint is scored on what it predicts")
    if a.out:
        from ..io.out_paths import output_dir

        output_dir(a.out)  # before the evaluation, not after it
    paths = resolve_split(a.data, a.split, a.val_images, a.val_ann)
    report_paths(paths, a.split)  # what is scored, before the model runs
    if a.predictions:
        from ..data.formats import ground_truth
        from ..engine.coco_eval import evaluate_detections, iou_types_of

        types = {"both": ("bbox", "segm"), None: None}.get(a.iou_type, (a.iou_type,)) or iou_types_of(a.predictions)
        result = evaluate_detections(ground_truth(paths), a.predictions, out_dir=a.out, iou_type=types, conf=a.conf)
    else:
        from .. import api
        from ..engine.distributed import init_from_env
        from ..engine.evaluate import eval_dataset, evaluate

        device = init_from_env(a.device)
        model = api.load(a.checkpoint, map_location=device)
        result = evaluate(model.module, eval_dataset(model.config, model.label_map, paths), device,
                          batch_size=a.batch_size, num_workers=a.workers, out_dir=a.out, conf=a.conf)
    if result is not None:
        print(result.table())
        if a.out:
            from ..reports.report import write_eval_report

            written = write_eval_report(result, a.out)
            print(f"wrote {Path(a.out) / 'metrics.json'}" + "".join(f", {p.name}" for p in written))
    return 0


def add_demo(sub: argparse._SubParsersAction) -> None:
    from ..presets import DEFAULT_TINY

    p = sub.add_parser("demo", help="generate the synthetic data, train the default tiny preset, evaluate, plot",
                       description=f"The whole pipeline on the CPU in one command: write the synthetic dataset to "
                                   f"--data (when missing), train {DEFAULT_TINY} into --out, evaluate it, and plot "
                                   f"training_curves.png and predictions.png (12-20 min on 2 cores).")
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
