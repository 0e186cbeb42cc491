"""``matchdetr synth | train | eval | predict | models | demo``.

Errors the user can fix (bad key, missing file, broken dataset) end in one line, ``matchdetr: error: ...``,
and exit code 2; never a traceback. Set ``MATCHDETR_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Sequence

from .config import ConfigError, apply_overrides


def _user_errors() -> tuple[type[BaseException], ...]:
    from .data.coco import DatasetError
    from .data.images import ImageLoadError
    from .engine.checkpoint import CheckpointError
    from .engine.coco_eval import EvalInputError

    return (ConfigError, DatasetError, ImageLoadError, CheckpointError, EvalInputError, FileNotFoundError, ValueError)


# ----------------------------------------------------------------------------------------------- synth
def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write the built-in synthetic COCO-format dataset",
                       description="Generate the procedural shapes dataset (COCO layout) into OUT_DIR.")
    p.add_argument("out_dir")
    p.add_argument("--train", type=int, default=2000, help="training images (default 2000)")
    p.add_argument("--val", type=int, default=250, help="validation images (default 250)")
    p.add_argument("--min-side", type=int, default=160)
    p.add_argument("--max-side", type=int, default=320)
    p.add_argument("--max-objects", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="processes (output is identical for any value)")
    p.set_defaults(func=cmd_synth)


def cmd_synth(a: argparse.Namespace) -> int:
    from .data.synthetic import generate

    summary = generate(a.out_dir, num_train=a.train, num_val=a.val, min_side=a.min_side, max_side=a.max_side,
                       max_objects=a.max_objects, seed=a.seed, workers=a.workers)
    print(json.dumps(summary, indent=2))
    return 0


# ----------------------------------------------------------------------------------------------- train
def _add_data_args(p: argparse.ArgumentParser, splits: Sequence[str]) -> None:
    p.add_argument("--data", help="dataset folder: SPLIT/ images + annotations/instances_SPLIT.json (COCO's *2017 names work too)")
    for s in splits:
        p.add_argument(f"--{s}-images", help=f"{s} image folder (overrides --data)")
        p.add_argument(f"--{s}-ann", help=f"{s} annotation JSON (overrides --data)")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a preset on a COCO-format dataset",
                       description="Train a preset. Launch with torchrun for several processes or nodes.")
    p.add_argument("--model", required=True, help="preset name (see `matchdetr models`)")
    _add_data_args(p, ("train", "val"))
    p.add_argument("--out", required=True, help="run directory (checkpoints, metrics.jsonl, eval/)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--iters", type=int, help="train for this many iterations")
    g.add_argument("--epochs", type=int, help="train for this many epochs")
    p.add_argument("--batch-size", type=int, help="images per process")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in --out")
    p.add_argument("--no-val", action="store_true", help="skip evaluation")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="typed config override, e.g. --set model.transformer.num_queries=100 (repeatable)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)


def _train_config(a: argparse.Namespace):  # -> Config
    from . import presets

    cfg = presets.get(a.model)
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
    from .data.coco import resolve_split
    from .engine import distributed as dist
    from .engine.train import train

    cfg = _train_config(a)
    train_paths = resolve_split(a.data, "train", a.train_images, a.train_ann)
    val_paths = None if a.no_val else resolve_split(a.data, "val", a.val_images, a.val_ann)
    result = train(cfg, train_paths, val_paths, a.out, device=a.device, resume=a.resume, progress=not a.no_progress)
    if dist.is_main():
        if result.evaluation is not None:
            print(result.evaluation.table())
        print(f"trained {result.iterations} iterations in {result.seconds / 60:.1f} min; run directory: {result.run_dir}")
    dist.cleanup()
    return 0


# ------------------------------------------------------------------------------------------------ eval
def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score a checkpoint, or a COCO results file without a model",
                       description="COCO bbox evaluation (AP in percent, per-class AP).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint file or run directory")
    src.add_argument("--predictions", help="COCO results JSON to score")
    _add_data_args(p, ("val",))
    p.add_argument("--split", default="val")
    p.add_argument("--out", help="where to write metrics.json (and results.json)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=cmd_eval)


def cmd_eval(a: argparse.Namespace) -> int:
    from .data.coco import resolve_split

    paths = resolve_split(a.data, a.split, a.val_images, a.val_ann)
    if a.predictions:
        from .engine.coco_eval import evaluate_detections

        result = evaluate_detections(paths.annotations, a.predictions, out_dir=a.out)
    else:
        from . import api
        from .data.coco import CocoDetection
        from .data.transforms import build_transforms
        from .engine.distributed import init_from_env
        from .engine.evaluate import evaluate

        device = init_from_env(a.device)
        model = api.load(a.checkpoint, map_location=device)
        assert model.config is not None
        dataset = CocoDetection(paths, build_transforms(model.config.data, train=False), model.label_map)
        result = evaluate(model, dataset, device, batch_size=a.batch_size, num_workers=a.workers, out_dir=a.out)
    if result is not None:
        print(result.table())
        if a.out:
            print(f"wrote {Path(a.out) / 'metrics.json'}")
    return 0


# --------------------------------------------------------------------------------------------- predict
def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="detect objects in images; writes annotated PNGs and detections.json")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run directory")
    p.add_argument("--out", default="predictions", help="output folder (default ./predictions)")
    p.add_argument("--threshold", type=float, default=0.3)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_predict)


def cmd_predict(a: argparse.Namespace) -> int:
    from . import api
    from .data.images import load_rgb
    from .engine.distributed import init_from_env
    from .visualize import draw_detections

    paths = api.iter_image_paths(a.images)
    if not paths:
        raise FileNotFoundError(f"no images found in {', '.join(a.images)}")
    model = api.load(a.checkpoint, map_location=init_from_env(a.device))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for path in paths:
        img = load_rgb(path)
        det = model.predict([img], threshold=a.threshold)[0]
        png = out / f"{path.stem}.png"
        draw_detections(img, det["boxes"], det["scores"], det["names"]).save(png)
        records.append({"file": str(path), "annotated": str(png), "detections": [
            {"bbox_xyxy": [round(v, 2) for v in b], "score": round(s, 4), "category_id": c, "name": n}
            for b, s, c, n in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist(), det["names"])]})
    (out / "detections.json").write_text(json.dumps(records, indent=1))
    total = sum(len(r["detections"]) for r in records)
    print(f"{len(records)} images, {total} detections above {a.threshold}; wrote {out}/*.png and {out / 'detections.json'}")
    return 0


# ---------------------------------------------------------------------------------------------- models
def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the presets with their parameter counts")
    p.add_argument("--num-classes", type=int, default=91)
    p.add_argument("--no-params", action="store_true", help="only list names (fast)")
    p.set_defaults(func=cmd_models)


def cmd_models(a: argparse.Namespace) -> int:
    from . import api, presets

    print(f"{'preset':32s} {'params':>12s} {'trainable':>12s}")
    for name in presets.names():
        if a.no_params:
            print(name)
            continue
        model = api.build(name, num_classes=a.num_classes)
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"{name:32s} {total / 1e6:11.2f}M {trainable / 1e6:11.2f}M")
    return 0


# --------------------------------------------------------------------------------------------- convert
def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="import weights from other implementations",
                       description="Convert released weights into a matchdetr checkpoint (one .safetensors file).")
    csub = p.add_subparsers(dest="source", required=True, metavar="{hf}")
    hf = csub.add_parser("hf", help="HF transformers DeformableDetrForObjectDetection (save_pretrained directory)")
    hf.add_argument("src", help="directory with config.json and *.safetensors (use_timm_backbone=False)")
    hf.add_argument("out", help="output checkpoint, e.g. deformable-detr.safetensors")
    hf.set_defaults(func=cmd_convert_hf)


def cmd_convert_hf(a: argparse.Namespace) -> int:
    from .interop.hf_deformable_detr import convert_hf_deformable_detr

    out = convert_hf_deformable_detr(a.src, a.out)
    print(f"wrote {out}; load it with matchdetr.load('{out}') or --checkpoint {out}")
    return 0


# ----------------------------------------------------------------------------------------------- bench
def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks: speed (and, later, convergence)")
    bsub = p.add_subparsers(dest="bench", required=True, metavar="{speed}")
    s = bsub.add_parser("speed", help="inference latency, training-step time and peak memory of a preset")
    s.add_argument("--model", required=True, help="preset name")
    s.add_argument("--vs-hf", action="store_true", help="also time HF transformers' twin on identical weights")
    s.add_argument("--device", default="auto")
    s.add_argument("--size", default="640x640", help="HxW (default 640x640)")
    s.add_argument("--warmup", type=int, default=2)
    s.add_argument("--repeats", type=int, default=5)
    s.set_defaults(func=cmd_bench_speed)


def cmd_bench_speed(a: argparse.Namespace) -> int:
    from .analysis.speed import bench_speed, format_table

    try:
        h, w = (int(v) for v in a.size.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must look like 640x640, got {a.size!r}") from None
    rows = bench_speed(a.model, vs_hf=a.vs_hf, device=a.device, size=(h, w), warmup=a.warmup, repeats=a.repeats)
    device = a.device if a.device != "auto" else ("cuda" if __import__("torch").cuda.is_available() else "cpu")
    print(format_table(a.model, rows, device, (h, w)))
    return 0


# ------------------------------------------------------------------------------------------------ demo
def _add_demo(sub: argparse._SubParsersAction) -> None:
    from .presets import DEFAULT_TINY

    p = sub.add_parser("demo", help="generate the synthetic data, train the default tiny preset, evaluate, plot")
    p.add_argument("--model", default=DEFAULT_TINY)
    p.add_argument("--data", default="runs/synthetic")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--iters", type=int, help="override the preset's iteration count")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_demo)


def cmd_demo(a: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(model=a.model, data=a.data, out=a.out, iters=a.iters, device=a.device)


# ------------------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="matchdetr", description="DETR-family detectors built around better matching.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{synth,train,eval,predict,models,convert,bench,demo}")
    for add in (_add_synth, _add_train, _add_eval, _add_predict, _add_models, _add_convert, _add_bench, _add_demo):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.formatwarning = lambda msg, cat, *_: f"warning: {msg}\n"
    try:
        return int(args.func(args) or 0)
    except _user_errors() as err:
        if os.environ.get("MATCHDETR_DEBUG"):
            raise
        print(f"matchdetr: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("matchdetr: interrupted", file=sys.stderr)
        return 130
