"""``matchdetr predict | export | report``: detections, ONNX export, and the plots of a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import DEVICE_HELP
from .errors import nonneg_int, positive_int, probability
from .paths import checkpoint_path, images_path, in_place_path, input_path, output_dir, output_file


def add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="detect objects in images, folders or videos; writes annotated PNGs and detections.json",
                       description="Detect objects with a checkpoint (PyTorch) or an exported ONNX model (onnxruntime "
                                   "alone, torch is not imported). Videos need OpenCV: pip install '.[video]' in the checkout. "
                                   "Never writes over an input; an unreadable image is reported and skipped.")
    p.add_argument("images", nargs="+", type=images_path, help="image files, folders of images, or video files")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=checkpoint_path, help="checkpoint file or run directory")
    src.add_argument("--model", type=input_path,
                     help="ONNX model written by `matchdetr export` (runs on onnxruntime, without torch)")
    p.add_argument("--out", type=output_dir("detections.json"), default="predictions",
                   help="output folder (must not be an input folder, nor inside a dataset split folder unless "
                        "--into-dataset)")
    p.add_argument("--into-dataset", action="store_true",
                   help="allow --out / --coco-json inside a dataset split folder (a COCO split, YOLO images/, VOC "
                        "JPEGImages/); refused otherwise, since training and evaluation would read the outputs as images")
    p.add_argument("--threshold", type=probability, default=0.3, help="keep detections scoring above this, in [0, 1]")
    p.add_argument("--coco-json", type=output_file, help="also write the detections as a COCO results JSON to this file")
    p.add_argument("--coco-gt", type=input_path,
                   help="COCO annotation JSON whose file_name -> id mapping gives the image ids of --coco-json")
    p.add_argument("--every", type=positive_int, default=1, help="videos: run on every N-th frame")
    p.add_argument("--device", default="auto", help=DEVICE_HELP + " (ignored with --model)")
    p.add_argument("--compile", action="store_true", help="run the model through torch.compile (inductor; each new "
                   "image size compiles first, minutes on a CPU; eager with a warning where it cannot)")
    p.set_defaults(func=cmd_predict)


def cmd_predict(a: argparse.Namespace) -> int:
    if a.model and a.compile:
        raise ValueError("predict: --compile is for --checkpoint models; an ONNX --model runs on onnxruntime")
    if a.model:  # onnxruntime only: nothing on this path imports torch
        from ..inference.onnx_predict import predict_command

        print(predict_command(a.model, a.images, a.out, a.threshold, a.coco_json, a.coco_gt, a.every,
                              a.into_dataset))
        return 0
    from .. import api
    from ..data.images import load_rgb
    from ..engine.distributed import init_from_env
    from ..inference.predict_io import plan_predict, run_predict, summary_line

    plan = plan_predict(a.images, a.out, a.coco_json, a.coco_gt, a.into_dataset)  # every check before the model
    model = api.load(a.checkpoint, map_location=init_from_env(a.device))
    if a.compile:
        from ..engine.compile import compile_model

        compile_model(model.module)
    summary = run_predict(lambda imgs: model.predict(imgs, threshold=a.threshold), a.images, a.out, load_rgb,
                          threshold=a.threshold, coco_json=a.coco_json, coco_gt=a.coco_gt, every=a.every, plan=plan)
    print(summary_line(summary, a.threshold))
    return 0


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX (dynamic batch and image size)",
                       description="Write an ONNX graph (TorchScript exporter, opset >= 16) that takes normalised "
                                   "images [B,3,H,W] (+ pixel_mask [B,H,W], True on padding) of any size and returns "
                                   "logits [B,Q,C] and boxes [B,Q,4] (normalised cxcywh). Run it without torch with "
                                   "`matchdetr predict --model OUT IMAGES`. Needs onnx: pip install '.[export]' in the checkout.")
    p.add_argument("--checkpoint", type=checkpoint_path, required=True, help="checkpoint file or run directory")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="only onnx for now")
    p.add_argument("--out", type=output_file, required=True, help="output file, e.g. model.onnx")
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
    from .. import api
    from ..inference.export import check_onnx, check_opset, export_onnx
    from ..io.out_paths import output_file

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
    path = export_onnx(model.module, model.config, model.label_map, a.out, opset=a.opset, with_mask=not a.no_mask,
                       topk=a.topk or None, sample_size=size)
    print(f"wrote {path} (opset {a.opset}; inputs {'images' if a.no_mask else 'images, pixel_mask'}; dynamic batch, "
          f"height, width)")
    if a.check:
        s = model.config.data.test_size
        diffs = check_onnx(model.module, path, sizes=((s, s), (max(32, s * 3 // 4), s + s // 4)))
        print("onnxruntime vs PyTorch, max abs difference: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
        if max(diffs.values()) > 1e-3:
            raise ValueError(f"{path}: onnxruntime output differs from PyTorch by more than 1e-3")
    return 0


def add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="plots and tables of a run: results.csv, training curves, per-class AP, PR curves",
                       description="Write results.csv, training_curves.png, per_class_ap.csv/.png and pr_curves.png "
                                   "into RUN_DIR from its metrics.jsonl and eval/ files.")
    p.add_argument("run_dir", type=in_place_path, help="a training run directory")
    p.set_defaults(func=cmd_report)


def cmd_report(a: argparse.Namespace) -> int:
    from ..io.out_paths import output_dir
    from ..reports.report import write_run_report

    if not Path(a.run_dir).is_dir():
        raise FileNotFoundError(f"{a.run_dir}: no such run directory")
    output_dir(a.run_dir, "RUN_DIR")
    for path in write_run_report(a.run_dir):
        print(f"wrote {path}")
    return 0
