"""``matchdetr synth | train | eval | predict | export | report | models | convert | bench | demo | analyze``.

Errors the user can fix (a bad option value or key, a missing or unwritable file, a broken dataset, an absent
device) end in one line, ``matchdetr: error: ...``, and exit code 2; never a traceback. Set
``MATCHDETR_DEBUG=1`` to see the traceback instead. The policy lives in ``cli_errors.py`` and the bench
commands in ``cli_bench.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import warnings
from pathlib import Path
from typing import Sequence

from .cli_bench import add_bench
from .cli_errors import (Parser, UsageError, float_in, int_at_least, nonneg_int, positive_int, probability,
                         run_command)
from .config import ConfigError, apply_overrides

DEVICE_HELP = "auto (cuda when available, else cpu) | cpu | cuda | cuda:N | mps"


# ----------------------------------------------------------------------------------------------- synth
def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write the built-in synthetic COCO-format dataset",
                       description="Generate the procedural shapes dataset (COCO layout) into OUT_DIR.")
    p.add_argument("out_dir", help="folder to write the dataset into")
    p.add_argument("--train", type=nonneg_int, default=2000, help="training images")
    p.add_argument("--val", type=nonneg_int, default=250, help="validation images")
    p.add_argument("--min-side", type=int_at_least(32), default=160, help="shortest image side in pixels")
    p.add_argument("--max-side", type=int_at_least(32), default=320, help="longest image side in pixels")
    p.add_argument("--max-objects", type=positive_int, default=20, help="most objects in one image")
    p.add_argument("--seed", type=nonneg_int, default=0, help="the dataset is a pure function of the seed")
    p.add_argument("--workers", type=nonneg_int, default=0, help="processes (output is identical for any value)")
    p.add_argument("--format", choices=("coco", "yolo", "voc"), default="coco",
                   help="dataset layout: coco, yolo (images/ + labels/ + data.yaml) or voc (Pascal VOC XML)")
    p.set_defaults(func=cmd_synth)


def cmd_synth(a: argparse.Namespace) -> int:
    from .data.synthetic import generate
    from .out_paths import output_dir

    if a.min_side > a.max_side:
        raise ConfigError(f"--min-side {a.min_side} is larger than --max-side {a.max_side}")
    output_dir(a.out_dir, "OUT_DIR")
    fmt = getattr(a, "format", "coco")
    target = Path(a.out_dir) / ".coco" if fmt != "coco" else Path(a.out_dir)
    summary = generate(target, num_train=a.train, num_val=a.val, min_side=a.min_side, max_side=a.max_side,
                       max_objects=a.max_objects, seed=a.seed, workers=a.workers)
    if fmt != "coco":  # the same images and boxes, written in the other layout
        from .data.convert import convert_dataset

        convert_dataset(target, fmt, a.out_dir)
        shutil.rmtree(target)
    print(json.dumps(summary, indent=2))
    return 0


# ----------------------------------------------------------------------------------------------- train
def _add_data_args(p: argparse.ArgumentParser, splits: Sequence[str]) -> None:
    p.add_argument("--data", help="dataset folder: SPLIT/ images + annotations/instances_SPLIT.json (COCO's *2017 "
                                  "names work too), a YOLO folder or data.yaml, or a Pascal VOC folder")
    for s in splits:
        p.add_argument(f"--{s}-images", help=f"{s} image folder (overrides --data)")
        p.add_argument(f"--{s}-ann", help=f"{s} annotation JSON (overrides --data)")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a preset on a COCO-format dataset",
                       description="Train a preset. Launch with torchrun for several processes or nodes. A new run "
                                   "goes into an empty or new --out; continue one with --resume, or start over in "
                                   "its folder with --exist-ok.")
    p.add_argument("--model", help="preset name (see `matchdetr models`); optional with --init (default: the "
                                    "checkpoint's own configuration)")
    p.add_argument("--init", help="start from this checkpoint's weights (file or run directory; fresh optimizer and "
                                  "schedule); class heads are re-initialised where the dataset's class names differ")
    _add_data_args(p, ("train", "val"))
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
    from . import presets

    if a.model:
        cfg = presets.get(a.model)
    elif getattr(a, "init", None):  # fine-tune the checkpoint's own architecture
        from .config import Config
        from .engine.checkpoint import newest_weights, read_meta

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
    from .data.coco import resolve_split
    from .engine import distributed as dist
    from .engine.train import train

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


# ------------------------------------------------------------------------------------------------ eval
def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score a checkpoint, or a COCO results file without a model",
                       description="COCO bbox evaluation (AP in percent, per-class AP). An unreadable image is "
                                   "reported and scored as an image without detections.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint file (.safetensors) or run directory")
    src.add_argument("--predictions", help="COCO results JSON to score")
    _add_data_args(p, ("val",))
    p.add_argument("--split", default="val", help="which split of --data to score")
    p.add_argument("--out", help="folder for metrics.json, results.json, per-class AP and PR curves (default: print only)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="images per forward pass")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--workers", type=nonneg_int, default=2, help="DataLoader worker processes (0: load in the main process)")
    p.set_defaults(func=cmd_eval)


def cmd_eval(a: argparse.Namespace) -> int:
    from .data.coco import resolve_split

    if a.out:
        from .out_paths import output_dir

        output_dir(a.out)  # before the evaluation, not after it
    paths = resolve_split(a.data, a.split, a.val_images, a.val_ann)
    if a.predictions:
        from .data.formats import ground_truth
        from .engine.coco_eval import evaluate_detections

        result = evaluate_detections(ground_truth(paths), a.predictions, out_dir=a.out)
    else:
        from . import api
        from .engine.distributed import init_from_env
        from .engine.evaluate import evaluate

        device = init_from_env(a.device)
        model = api.load(a.checkpoint, map_location=device)
        result = evaluate(model, api.eval_split(model, paths), device, batch_size=a.batch_size, num_workers=a.workers, out_dir=a.out)
    if result is not None:
        print(result.table())
        if a.out:
            from .reports import write_eval_report

            written = write_eval_report(result, a.out)
            print(f"wrote {Path(a.out) / 'metrics.json'}" + "".join(f", {p.name}" for p in written))
    return 0


# --------------------------------------------------------------------------------------------- predict
def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="detect objects in images, folders or videos; writes annotated PNGs and detections.json",
                       description="Detect objects with a checkpoint (PyTorch) or an exported ONNX model (onnxruntime "
                                   "alone, torch is not imported). Videos need OpenCV: pip install 'matchdetr[video]'. "
                                   "Never writes over an input; an unreadable image is reported and skipped.")
    p.add_argument("images", nargs="+", help="image files, folders of images, or video files")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint file or run directory")
    src.add_argument("--model", help="ONNX model written by `matchdetr export` (runs on onnxruntime, without torch)")
    p.add_argument("--out", default="predictions", help="output folder (must not be an input folder)")
    p.add_argument("--threshold", type=probability, default=0.3, help="keep detections scoring above this, in [0, 1]")
    p.add_argument("--coco-json", help="also write the detections as a COCO results JSON to this file")
    p.add_argument("--coco-gt", help="COCO annotation JSON whose file_name -> id mapping gives the image ids of --coco-json")
    p.add_argument("--every", type=positive_int, default=1, help="videos: run on every N-th frame")
    p.add_argument("--device", default="auto", help=DEVICE_HELP + " (ignored with --model)")
    p.set_defaults(func=cmd_predict)


def cmd_predict(a: argparse.Namespace) -> int:
    if a.model:  # onnxruntime only: nothing on this path imports torch
        from .onnx_predict import predict_command

        print(predict_command(a.model, a.images, a.out, a.threshold, a.coco_json, a.coco_gt, a.every))
        return 0
    from . import api
    from .data.images import load_rgb
    from .engine.distributed import init_from_env
    from .predict_io import check_outputs, run_predict, summary_line

    plan = check_outputs(a.images, a.out, a.coco_json)  # before loading the model
    model = api.load(a.checkpoint, map_location=init_from_env(a.device))
    summary = run_predict(lambda imgs: model.predict(imgs, threshold=a.threshold), a.images, a.out, load_rgb,
                          threshold=a.threshold, coco_json=a.coco_json, coco_gt=a.coco_gt, every=a.every, plan=plan)
    print(summary_line(summary, a.threshold))
    return 0


# ---------------------------------------------------------------------------------------------- models
def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the presets with their parameter counts (and GFLOPs)",
                       description="Parameters (counted on the meta device: nothing is allocated) and, with --flops, "
                                   "fvcore-style GFLOPs (multiply-accumulates of convolutions and matrix products, "
                                   "one image) beside the papers' figures. Old preset names still resolve.")
    p.add_argument("--num-classes", type=positive_int, default=91, help="classes of the models counted")
    p.add_argument("--no-params", action="store_true", help="only list names")
    p.add_argument("--flops", action="store_true", help="also count GFLOPs (about 40 s per full-size preset on 2 cores)")
    p.add_argument("--size", default="800x1066", help="HEIGHTxWIDTH of the image for --flops (800x1066: a "
                                                   "640x480 COCO image after the 800-px resize)")
    p.add_argument("--presets", help="comma-separated preset names (default: all)")
    p.set_defaults(func=cmd_models)


def cmd_models(a: argparse.Namespace) -> int:
    from . import presets

    names = presets.names() if not a.presets else [presets.canonical(n.strip()) for n in a.presets.split(",") if n.strip()]
    if a.no_params:
        print("\n".join(names))
        return 0
    if a.flops:  # a real forward pass per preset
        from .analysis.flops import HEADER, model_cost, parse_size

        size = parse_size(a.size)
        print(HEADER)
        for name in names:
            print(model_cost(name, a.num_classes, size).row(), flush=True)
        return 0
    from .analysis.param_count import parameter_table  # meta-device builds, cached: no torch import when cached

    for line in parameter_table(names, a.num_classes):
        print(line, flush=True)
    return 0


# --------------------------------------------------------------------------------------------- convert
def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="import weights from other implementations",
                       description="Convert released weights into a matchdetr checkpoint (one .safetensors file).")
    csub = p.add_subparsers(dest="source", required=True, metavar="{hf,official}")
    hf = csub.add_parser("hf", help="HF transformers DeformableDetrForObjectDetection (save_pretrained directory)")
    hf.add_argument("src", help="directory with config.json and *.safetensors (use_timm_backbone=False)")
    hf.add_argument("out", help="output checkpoint, e.g. deformable-detr.safetensors")
    hf.set_defaults(func=cmd_convert_hf)
    off = csub.add_parser("official", help="the authors' released DINO / Stable-DINO (detrex) or SAM-DETR checkpoint",
                          description="Convert a released checkpoint (.pth, read with torch.load(weights_only=True) "
                                      "only, or .safetensors) into one matchdetr .safetensors file. The preset is "
                                      "inferred from the checkpoint unless --preset is given.")
    off.add_argument("--family", required=True, choices=["dino", "stable-dino", "sam-detr"],
                     help="dino: detrex projects/dino; stable-dino: IDEA-Research/Stable-DINO; sam-detr: ZhangGongjie/SAM-DETR")
    off.add_argument("--preset", help="matchdetr preset with the released architecture (default: inferred)")
    off.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                     help="config override applied after the architecture is read from the checkpoint, e.g. "
                          "--set model.backbone.name=resnet18 for a checkpoint trained with another backbone (repeatable)")
    off.add_argument("--nms", action="store_true",
                     help="keep class-aware NMS at IoU 0.8 after the top-k at test time (Stable-DINO's paper "
                          "evaluation; default off, as the releases' own evaluation runs)")
    off.add_argument("src", help="released checkpoint, e.g. dino_r50_4scale_12ep.pth")
    off.add_argument("out", help="output checkpoint, e.g. dino-4scale-r50.safetensors")
    off.set_defaults(func=cmd_convert_official)


def cmd_convert_hf(a: argparse.Namespace) -> int:
    from .interop.hf_deformable_detr import convert_hf_deformable_detr
    from .out_paths import output_file

    output_file(a.out, "OUT")
    out = convert_hf_deformable_detr(a.src, a.out)
    print(f"wrote {out}; load it with matchdetr.load('{out}') or --checkpoint {out}")
    return 0


def cmd_convert_official(a: argparse.Namespace) -> int:
    from .interop.official import NMS_IOU, convert_official
    from .out_paths import output_file

    output_file(a.out, "OUT")
    out = convert_official(a.family, a.src, a.out, a.preset, nms=a.nms, overrides=a.overrides)
    print(f"test-time NMS: {f'on (class-aware, IoU {NMS_IOU})' if a.nms else 'off, as the release evaluates (--nms turns it on)'}")
    print(f"wrote {out}; load it with matchdetr.load('{out}') or --checkpoint {out}")
    return 0


# ------------------------------------------------------------------------------------------------ demo
def _add_demo(sub: argparse._SubParsersAction) -> None:
    from .presets import DEFAULT_TINY

    p = sub.add_parser("demo", help="generate the synthetic data, train the default tiny preset, evaluate, plot")
    p.add_argument("--model", default=DEFAULT_TINY, help="preset to train")
    p.add_argument("--data", default="runs/synthetic", help="dataset folder (generated when missing)")
    p.add_argument("--out", default="runs/demo", help="the demo's run directory: continued when it holds a "
                                                     "checkpoint, else started over")
    p.add_argument("--iters", type=positive_int, help="override the preset's iteration count")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=cmd_demo)


def cmd_demo(a: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(model=a.model, data=a.data, out=a.out, iters=a.iters, device=a.device)


# --------------------------------------------------------------------------------------------- analyze
def _add_analyze(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="diagnostics of a trained model (unstable score of matching, error breakdown)")
    asub = p.add_subparsers(dest="analysis", required=True)

    def analysis(name: str, help: str, description: str, writes: str) -> argparse.ArgumentParser:
        a = asub.add_parser(name, help=help, description=f"{description} Writes {writes} to --out.")
        a.add_argument("--checkpoint", required=True, help="checkpoint file or run directory")
        a.add_argument("--data", required=True, help="dataset folder (COCO layout)")
        a.add_argument("--split", default="val", help="which split of --data")
        a.add_argument("--out", help=f"folder for {writes} (default: next to the checkpoint)")
        a.add_argument("--device", default="auto", help=DEVICE_HELP)
        return a

    u = analysis("unstable", "per-layer unstable score (Stable-DINO sec 2.4.3) of a checkpoint",
                 "Match every decoder layer (and DINO's encoder proposals) to the ground truth and report, per layer, "
                 "the percentage of GTs whose matched query changed from the previous layer.",
                 "unstable.csv / unstable.json")
    u.add_argument("--images", type=positive_int, default=20, help="first N images of the split (paper: 20)")
    u.set_defaults(func=cmd_analyze_unstable)
    e = analysis("errors", "found-but-misnamed vs not-found ground truths, by object size",
                 "Predict a split and report, per COCO area range, the percentage of ground-truth boxes some top-k "
                 "detection of any class overlaps at IoU >= --iou (found), and of those, the percentage whose "
                 "best-scored overlapping detection has the right class (named).", "errors.json")
    e.add_argument("--iou", type=float_in(0.0, 1.0, lo_open=True), default=0.5,
                   help="IoU at which a detection finds a ground-truth box, in (0, 1]")
    e.add_argument("--workers", type=nonneg_int, default=2, help="DataLoader worker processes")
    e.set_defaults(func=cmd_analyze_errors)


def _analysis_out(a: argparse.Namespace, name: str) -> Path:
    ck = Path(a.checkpoint)
    return Path(a.out) if a.out else (ck if ck.is_dir() else ck.parent) / name


def cmd_analyze_unstable(a: argparse.Namespace) -> int:
    from .analysis.unstable_score import analyze_checkpoint

    score = analyze_checkpoint(a.checkpoint, a.data, a.split, a.images, a.device)
    print(score.table())
    for path in score.write(_analysis_out(a, "unstable")):
        print(f"wrote {path}")
    return 0


def cmd_analyze_errors(a: argparse.Namespace) -> int:
    from .analysis.errors import analyze_checkpoint

    result = analyze_checkpoint(a.checkpoint, a.data, a.split, a.iou, a.device, num_workers=a.workers)
    print(result.table())
    print(f"wrote {result.write(_analysis_out(a, 'errors'))}")
    return 0


# --------------------------------------------------------------------------------------- export, report
def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX (dynamic batch and image size)",
                       description="Write an ONNX graph (TorchScript exporter, opset >= 16) that takes normalised "
                                   "images [B,3,H,W] (+ pixel_mask [B,H,W], True on padding) of any size and returns "
                                   "logits [B,Q,C] and boxes [B,Q,4] (normalised cxcywh). Run it without torch with "
                                   "`matchdetr predict --model OUT IMAGES`. Needs: pip install 'matchdetr[onnx]'.")
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run directory")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="only onnx for now")
    p.add_argument("--out", required=True, help="output file, e.g. model.onnx")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, 16 (GridSample) to the exporter's newest")
    p.add_argument("--no-mask", action="store_true", help="images-only input (no padding: one image per call "
                                                          "or equal sizes)")
    p.add_argument("--topk", type=nonneg_int, default=0, help="also output the top-k post-processing: scores, labels, "
                                                       "boxes_xyxy (normalised); 0 = off")
    p.add_argument("--size", help="HxW of the tracing input (default: the config's test size); "
                                                 "the graph accepts any size")
    p.add_argument("--check", action="store_true", help="compare onnxruntime with PyTorch at two image sizes")
    p.set_defaults(func=cmd_export)


def cmd_export(a: argparse.Namespace) -> int:
    from . import api
    from .export import check_onnx, check_opset, export_onnx
    from .out_paths import output_file

    size = None
    if a.size:
        try:
            size = tuple(int(v) for v in a.size.lower().split("x"))
            assert len(size) == 2
        except (ValueError, AssertionError):
            raise ValueError(f"--size must look like 640x640, got {a.size!r}") from None
    check_opset(a.opset)  # before loading anything
    output_file(a.out)
    model = api.load(a.checkpoint)
    path = export_onnx(model, a.out, opset=a.opset, with_mask=not a.no_mask, topk=a.topk or None, sample_size=size)
    print(f"wrote {path} (opset {a.opset}; inputs {'images' if a.no_mask else 'images, pixel_mask'}; dynamic batch, "
          f"height, width)")
    if a.check:
        s = model.config.data.test_size
        diffs = check_onnx(model, path, sizes=((s, s), (max(32, s * 3 // 4), s + s // 4)))
        print("onnxruntime vs PyTorch, max abs difference: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
        if max(diffs.values()) > 1e-3:
            raise ValueError(f"{path}: onnxruntime output differs from PyTorch by more than 1e-3")
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="plots and tables of a run: results.csv, training curves, per-class AP, PR curves",
                       description="Write results.csv, training_curves.png, per_class_ap.csv/.png and pr_curves.png "
                                   "into RUN_DIR from its metrics.jsonl and eval/ files.")
    p.add_argument("run_dir", help="a training run directory")
    p.set_defaults(func=cmd_report)


def cmd_report(a: argparse.Namespace) -> int:
    from .out_paths import output_dir
    from .reports import write_run_report

    if not Path(a.run_dir).is_dir():
        raise FileNotFoundError(f"{a.run_dir}: no such run directory")
    output_dir(a.run_dir, "RUN_DIR")
    for path in write_run_report(a.run_dir):
        print(f"wrote {path}")
    return 0


# ------------------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="matchdetr", description="DETR-family detectors built around better matching.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{synth,train,eval,predict,export,report,models,convert,bench,demo,analyze}")
    for add in (_add_synth, _add_train, _add_eval, _add_predict, _add_export, _add_report, _add_models, _add_convert,
                add_bench, _add_demo, _add_analyze):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit code (see ``cli_errors.run_command``)."""
    try:
        args = build_parser().parse_args(argv)
    except UsageError as err:  # reported in one line already; --help and --version still exit normally
        return int(err.code or 2)
    warnings.formatwarning = lambda msg, cat, *_: f"warning: {msg}\n"
    return run_command(args.func, args)
