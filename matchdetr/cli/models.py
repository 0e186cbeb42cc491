"""``matchdetr models | convert``: the preset list and weight import from other implementations."""

from __future__ import annotations

import argparse

from .errors import positive_int
from .paths import input_path, output_file, source_dir


def add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="the presets: task, family, published AP, official weights, parameters; "
                                      "--show PRESET: its config keys",
                       description="A guide to choosing a model: every preset with its task (boxes or masks), "
                                   "family, parameters (counted on the meta device: nothing is allocated), the COCO "
                                   "AP its paper publishes for the full-size model (with the source) and whether the "
                                   "authors' weights convert; the tiny preset to start from comes first. --flops "
                                   "counts fvcore-style GFLOPs (multiply-accumulates of convolutions and matrix "
                                   "products, one image) beside the papers' figures. Old preset names still resolve.")
    p.add_argument("--num-classes", type=positive_int, default=91, help="classes of the models counted")
    p.add_argument("--no-params", action="store_true", help="only list names")
    p.add_argument("--flops", action="store_true", help="also count GFLOPs (about 40 s per full-size preset on 2 cores)")
    p.add_argument("--size", default="800x1066", help="HEIGHTxWIDTH of the image for --flops (800x1066: a "
                                                   "640x480 COCO image after the 800-px resize)")
    p.add_argument("--presets", help="comma-separated preset names (default: all)")
    p.add_argument("--show", metavar="PRESET", help="print every config key of PRESET with its value, the default of "
                                                    "its field (for a component: its kind and the other kinds) and "
                                                    "its meaning; `train --set KEY=VALUE` changes one")
    p.set_defaults(func=cmd_models)


def show_preset(name: str) -> list[str]:
    """The lines of ``models --show``: a header, then one line per config key (``config/describe.py``)."""
    from .. import presets
    from ..config.describe import describe

    cfg = presets.get(name)
    rows = describe(cfg)
    return [f"{cfg.preset}: {len(rows)} config keys, each as KEY = VALUE (default: its field's own) and its meaning; "
            f"change one with `matchdetr train --model {cfg.preset} --set KEY=VALUE`, or several with --config FILE",
            *(row.line() for row in rows)]


def guide_lines(names: list[str], counts: dict[str, tuple[int, int]]) -> list[str]:
    """The lines of ``matchdetr models``: the recommended start, one row per preset, the sources and markers."""
    from ..presets import DEFAULT_TINY, guide

    lines = [f"Start with {DEFAULT_TINY}: the best -tiny preset on the synthetic benchmark (docs/benchmarks.md) and "
             "what `matchdetr demo` trains. -tiny presets train in CPU minutes at ~256 px; -r50 presets are the papers' "
             "full-size COCO models (a GPU), -swin-t / -swin-l their Swin Transformer ones. Keys and defaults of one: matchdetr models --show PRESET.",
             f"{'preset':32s} {'task':5s} {'family':24s} {'params':>8s} {'trainable':>9s}  "
             f"{'published COCO AP':27s} weights"]
    for name in names:
        fam = guide.family(name)
        published = guide.PUBLISHED.get(name)
        params, trainable = counts[name]
        mark = " <- start here" if name == DEFAULT_TINY else ""
        lines.append(f"{name:32s} {fam.task:5s} {fam.name:24s} {params / 1e6:7.2f}M {trainable / 1e6:8.2f}M  "
                     f"{published.text() if published else '':27s} {guide.OFFICIAL.get(name, '')}{mark}".rstrip())
    lines.append("published COCO AP: val2017 box AP (box / mask for masks) of the full-size model as its paper "
                 "(or the authors' release) reports it; " + "; ".join(f"[{k}] {v}" for k, v in guide.SOURCES.items()))
    lines.append("weights: " + "; ".join(f"{k}: {v}" for k, v in guide.WEIGHTS.items()))
    return lines


def cmd_models(a: argparse.Namespace) -> int:
    if a.show:
        print("\n".join(show_preset(a.show)))
        return 0
    from .. import presets

    if not (a.presets or a.no_params or a.flops):  # the guide: cached, without importing torch or a preset
        from ..analysis.param_count import parameter_counts

        counts = parameter_counts(None, a.num_classes)
        print("\n".join(guide_lines(list(counts), counts)), flush=True)
        return 0
    names = presets.names() if not a.presets else [presets.canonical(n.strip()) for n in a.presets.split(",") if n.strip()]
    if a.no_params:
        print("\n".join(names))
        return 0
    if a.flops:  # a real forward pass per preset
        from ..analysis.flops import HEADER, model_cost, parse_size

        size = parse_size(a.size)
        print(HEADER)
        for name in names:
            print(model_cost(name, a.num_classes, size).row(), flush=True)
        return 0
    from ..analysis.param_count import parameter_counts

    print("\n".join(guide_lines(names, parameter_counts(names, a.num_classes))), flush=True)
    return 0


def add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="import weights from other implementations",
                       description="Convert released weights into a matchdetr checkpoint (one .safetensors file).")
    csub = p.add_subparsers(dest="source", required=True, metavar="{hf,official}")
    hf = csub.add_parser("hf", help="HF transformers DeformableDetrForObjectDetection (save_pretrained directory)",
                         description="Convert a DeformableDetrForObjectDetection save_pretrained directory (plain, "
                                     "box refinement or two-stage; HF's own ResNet backbone, use_timm_backbone=False) "
                                     "into one matchdetr .safetensors file whose outputs equal HF's.")
    hf.add_argument("src", type=source_dir(".json", ".safetensors"),
                    help="directory with config.json and *.safetensors (use_timm_backbone=False)")
    hf.add_argument("out", type=output_file, help="output checkpoint, e.g. deformable-detr.safetensors")
    hf.set_defaults(func=cmd_convert_hf)
    off = csub.add_parser("official", help="the authors' released DINO / Stable-DINO (detrex), SAM-DETR or Mask-DINO checkpoint",
                          description="Convert a released checkpoint (.pth, read with torch.load(weights_only=True) "
                                      "only, or .safetensors) into one matchdetr .safetensors file. The preset is "
                                      "inferred from the checkpoint unless --preset is given.")
    off.add_argument("--family", required=True, choices=["dino", "stable-dino", "sam-detr", "maskdino", "stable-maskdino"],
                     help="dino: detrex projects/dino; stable-dino: IDEA-Research/Stable-DINO; sam-detr: ZhangGongjie/SAM-DETR; "
                          "maskdino: IDEA-Research/MaskDINO; stable-maskdino: its layout onto the Stable-MaskDINO preset")
    off.add_argument("--preset", help="matchdetr preset with the released architecture (default: inferred)")
    off.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                     help="config override applied after the architecture is read from the checkpoint, e.g. "
                          "--set model.backbone.depth=101 for a checkpoint trained with another backbone (repeatable)")
    off.add_argument("--nms", action="store_true",
                     help="keep class-aware NMS at IoU 0.8 after the top-k at test time (Stable-DINO's paper "
                          "evaluation; default off, as the releases' own evaluation runs)")
    off.add_argument("src", type=input_path, help="released checkpoint, e.g. dino_r50_4scale_12ep.pth")
    off.add_argument("out", type=output_file, help="output checkpoint, e.g. dino-4scale-r50.safetensors")
    off.set_defaults(func=cmd_convert_official)


def cmd_convert_hf(a: argparse.Namespace) -> int:
    from ..interop.hf_deformable_detr import convert_hf_deformable_detr
    from ..io.out_paths import output_file

    output_file(a.out, "OUT")
    out = convert_hf_deformable_detr(a.src, a.out)
    print(f"wrote {out}; load it with matchdetr.load('{out}') or --checkpoint {out}")
    return 0


def cmd_convert_official(a: argparse.Namespace) -> int:
    from ..interop.official import NMS_IOU, convert_official
    from ..io.out_paths import output_file

    output_file(a.out, "OUT")
    out = convert_official(a.family, a.src, a.out, a.preset, nms=a.nms, overrides=a.overrides)
    print(f"test-time NMS: {f'on (class-aware, IoU {NMS_IOU})' if a.nms else 'off, as the release evaluates (--nms turns it on)'}")
    print(f"wrote {out}; load it with matchdetr.load('{out}') or --checkpoint {out}")
    return 0
