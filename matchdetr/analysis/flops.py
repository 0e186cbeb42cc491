"""Parameters and GFLOPs counted the way the papers count them.

DETR, Deformable-DETR, DINO and SAM-DETR report fvcore-style figures: multiply-accumulates of convolutions and
matrix products (one MAC = one "flop"), for one image at inference. We count the same with PyTorch's
``FlopCounterMode`` (which counts 2 per MAC for exactly those ops: convolution, mm/addmm/bmm/baddbmm and
scaled-dot-product attention) and halve it. Multi-scale deformable attention is counted too, as the MACs it does
per sampled point and channel: 4, one per bilinear corner, whose weight already carries the attention weight
(``embedding_bag`` over the taps, ``ops/ms_deform_attn.py``). The ``grid_sample`` formulation of the export
path is counted as it computes: 4 per point and channel for the interpolation (``grid_sampler_2d``) and 1 for
the attention-weighted sum (``addcmul``; the first of a query's L x P terms is a plain product and is not
counted). Other element-wise work (norms, activations, softmax, the taps' arithmetic, which is per point, not
per channel) is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import torch
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten


def _bilinear_flops(input_shape, grid_shape, *args, out_shape=None, **kwargs) -> int:  # type: ignore[no-untyped-def]
    """``grid_sampler_2d`` [N, C, H, W] x [N, h, w, 2] -> [N, C, h, w]: 4 MACs (2 flops each) per output value."""
    return 2 * 4 * math.prod(out_shape)


def _addcmul_flops(*args, out_shape=None, **kwargs) -> int:  # type: ignore[no-untyped-def]
    """``out + a * b``: one MAC per output value (deformable attention's weighted sum over its samples)."""
    return 2 * math.prod(out_shape)


def _embedding_bag_flops(weight_shape, indices_shape, *args, out_shape=None, **kwargs) -> int:  # type: ignore[no-untyped-def]
    """``embedding_bag`` (sum mode, per-tap weights) of ``[R, K]`` taps into ``[rows, D]`` values: one MAC
    (2 flops) per tap and channel."""
    return 2 * math.prod(indices_shape) * weight_shape[1]


SAMPLING_FLOPS = {aten.grid_sampler_2d: _bilinear_flops, aten.addcmul: _addcmul_flops,
                  aten._embedding_bag_forward_only: _embedding_bag_flops, aten._embedding_bag: _embedding_bag_flops}

# The papers' figures for R50 at COCO inference size (parameters in millions, GFLOPs); None where not given.
PAPER: dict[str, tuple[float | None, float | None, str]] = {
    "detr-r50": (41.0, 86.0, "DETR table 1 / SAM-DETR++ table 1"),
    "deformable-detr-r50": (40.0, 173.0, "Deformable-DETR table 1"),
    "deformable-detr-refine-r50": (40.0, 173.0, "Deformable-DETR table 1"),
    "deformable-detr-two-stage-r50": (40.0, 173.0, "Deformable-DETR table 1"),
    "dino-4scale-r50": (47.0, 279.0, "DINO table 1"),
    "dino-5scale-r50": (47.0, 860.0, "DINO table 1"),
    "sam-detr-r50": (58.0, 100.0, "SAM-DETR official README"),
    "sam-detr-plus-plus-r50": (55.0, 203.0, "SAM-DETR++ table 1"),
}


@dataclass
class ModelCost:
    name: str
    params: int
    trainable: int
    gflops: float | None  # GMACs at ``size`` for one image, eval mode

    def row(self) -> str:
        paper_p, paper_g, _ = PAPER.get(self.name, (None, None, ""))
        g = f"{self.gflops:9.1f}" if self.gflops is not None else f"{'-':>9s}"
        pp = f"{paper_p:7.0f}M" if paper_p else f"{'':8s}"
        pg = f"{paper_g:9.0f}" if paper_g else f"{'':9s}"
        return f"{self.name:36s} {self.params / 1e6:9.2f}M {self.trainable / 1e6:9.2f}M {pp} {g} {pg}"


HEADER = f"{'preset':36s} {'params':>10s} {'trainable':>10s} {'paper':>8s} {'GFLOPs':>9s} {'paper':>9s}"


def count_gflops(model: torch.nn.Module, height: int, width: int) -> float:
    """fvcore-style GFLOPs (G multiply-accumulates) of one ``height x width`` image through ``model``."""
    was_training = model.training
    # No tensor may require grad: FlopCounterMode's module tracker fails on parameters that require grad
    # under no_grad, so gradients are switched off on the parameters instead.
    requires = [p.requires_grad for p in model.parameters()]
    model.eval().requires_grad_(False)
    try:
        image = torch.zeros(1, 3, height, width)
        counter = FlopCounterMode(display=False, custom_mapping=SAMPLING_FLOPS)
        with counter:
            model(image)
        return counter.get_total_flops() / 2 / 1e9
    finally:
        model.train(was_training)
        for p, r in zip(model.parameters(), requires):
            p.requires_grad_(r)


# A typical COCO val image after the 800-px shorter-side resize (640x480 -> 800x1066): the papers average
# their GFLOPs over the first COCO val images, which are mostly 640x480 / 480x640.
COCO_SIZE = (800, 1066)
# A 3:2 landscape COCO image (640x427 -> 800x1199), as common among the first val images as 640x480.
WIDE_SIZE = (800, 1200)


def model_cost(name: str, num_classes: int = 91, size: tuple[int, int] | None = COCO_SIZE) -> ModelCost:
    """Parameters of preset ``name`` and, if ``size`` is given, its GFLOPs at that (height, width)."""
    from .. import api

    model = api.build(name, num_classes=num_classes)
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return ModelCost(name, params, trainable, count_gflops(model, *size) if size else None)


def parse_size(text: str) -> tuple[int, int]:
    """``"800x1200"`` -> ``(800, 1200)`` (height x width)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size expects HEIGHTxWIDTH such as 800x1200, got {text!r}") from None
    if h < 32 or w < 32:
        raise ValueError(f"--size {text}: each side must be at least 32 pixels")
    return h, w


def markdown_table(costs: list[ModelCost], size: tuple[int, int], wide: list[ModelCost] | None = None,
                   wide_size: tuple[int, int] = WIDE_SIZE) -> str:
    """Parameters and GFLOPs beside the papers' figures, with the relative gap, as a markdown table; ``wide``:
    the same presets at ``wide_size`` (the papers average over images of several sizes: docs/benchmarks.md)."""
    wide_by_name = {c.name: c for c in wide or []}

    def gap(c: ModelCost | None, paper_g: float | None) -> str:
        return f"{100 * (c.gflops / paper_g - 1):+.0f} %" if (c and paper_g and c.gflops is not None) else "-"

    extra = f" GFLOPs @{wide_size[0]}x{wide_size[1]} (gap) |" if wide else ""
    lines = [f"| preset | params (total / trainable) | paper params | GFLOPs @{size[0]}x{size[1]} | paper GFLOPs "
             f"| gap |{extra} paper source |", "|---|---|---|---|---|---|" + ("---|" if wide else "") + "---|"]
    for c in costs:
        paper_p, paper_g, source = PAPER.get(c.name, (None, None, ""))
        gflops = "-" if c.gflops is None else f"{c.gflops:.1f}"
        w = wide_by_name.get(c.name)
        wide_cell = (f" {w.gflops:.1f} ({gap(w, paper_g)}) |" if w is not None and w.gflops is not None else " - |") if wide else ""
        lines.append(f"| `{c.name}` | {c.params / 1e6:.2f}M / {c.trainable / 1e6:.2f}M | "
                     f"{f'{paper_p:.0f}M' if paper_p else '-'} | {gflops} | {f'{paper_g:.0f}' if paper_g else '-'} | "
                     f"{gap(c, paper_g)} |{wide_cell} {source or '-'} |")
    return "\n".join(lines)


def docs_block() -> dict[str, str]:
    """The ``bench:flops`` block of docs/benchmarks.md: every paper-compared preset plus the stable ones, at
    COCO's and a wide size (``matchdetr bench docs --only flops``)."""
    from .studies import machine

    names = list(dict.fromkeys(list(PAPER) + ["stable-dino-4scale-r50", "stable-sam-detr-plus-plus-r50"]))
    costs, wide = [], []
    for name in names:
        costs.append(model_cost(name, 91, COCO_SIZE))
        wide.append(model_cost(name, 91, WIDE_SIZE))
        print(costs[-1].row(), f"{wide[-1].gflops:9.1f} @{WIDE_SIZE[0]}x{WIDE_SIZE[1]}", flush=True)
    return {"flops": f"`matchdetr bench docs --only flops` (91 classes, one {COCO_SIZE[0]}x{COCO_SIZE[1]} and one "
                     f"{WIDE_SIZE[0]}x{WIDE_SIZE[1]} image; {machine()}).\n\n"
                     f"{markdown_table(costs, COCO_SIZE, wide)}"}
