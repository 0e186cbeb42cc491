"""Named model configurations. A variant is a function returning a Config composed from shared parts.

Full-size presets follow the published ResNet-50 COCO recipes; ``-tiny`` presets keep the architecture and
shrink the numbers (ResNet-18 at quarter width, hidden 128, 3+3 layers, 100 queries, ~256 px images) so one
training step at batch 8 takes well under a second on a 2-core CPU (synthetic-benchmark spec).
"""

from __future__ import annotations

from typing import Callable

from .config import Config

DEFAULT_TINY = "detr-tiny"  # the preset `matchdetr demo` trains; switch to the best tiny preset as models land

_PRESETS: dict[str, Callable[[], Config]] = {}


def preset(name: str) -> Callable[[Callable[[], Config]], Callable[[], Config]]:
    def register(fn: Callable[[], Config]) -> Callable[[], Config]:
        _PRESETS[name] = fn
        return fn

    return register


def names() -> list[str]:
    return sorted(_PRESETS)


def get(name: str) -> Config:
    """A fresh Config for preset ``name`` (raises a one-line KeyError listing the presets)."""
    if name not in _PRESETS:
        raise KeyError(f"unknown preset '{name}'; available: {', '.join(names())}")
    cfg = _PRESETS[name]()
    cfg.preset = name
    return cfg


def make_tiny(cfg: Config) -> Config:
    """Shrink a full-size config in place to the CPU-sized form every ``-tiny`` preset shares."""
    b, t, d, tr = cfg.model.backbone, cfg.model.transformer, cfg.data, cfg.train
    b.name, b.width, b.norm, b.frozen_stages = "resnet18", 16, "bn", 0  # trained from scratch: no frozen stats
    t.hidden_dim, t.num_heads, t.dim_feedforward = 128, 8, 512
    t.enc_layers, t.dec_layers, t.num_queries, t.dropout = 3, 3, 100, 0.0
    cfg.model.postprocess.topk = 100
    # Mixed portrait/landscape batches pad to about max_size x max_size, so max_size sets the step time.
    d.train_scales, d.train_max_size = list(range(192, 257, 16)), 320
    d.crop_resize_scales, d.crop_min, d.crop_max = [192, 224, 256], 128, 224
    d.test_size, d.test_max_size = 224, 320
    tr.lr, tr.lr_backbone, tr.batch_size = 2e-4, 2e-4, 8  # no pretrained backbone: train it at full lr
    tr.iters, tr.lr_drop, tr.warmup_iters = 1500, 1200, 50
    tr.checkpoint_every, tr.eval_every, tr.log_every = 250, 500, 10
    return cfg


# -------------------------------------------------------------------------------------------------- DETR
@preset("detr-r50")
def detr_r50() -> Config:
    """DETR-R50 with 300 queries and sigmoid focal loss: SAM-DETR++ table 1's "DETR-dagger" (41M, 22.3 AP
    at 12 epochs). Stem + layer1 frozen; lr drop at epoch 11 of 12."""
    cfg = Config()
    cfg.model.arch = "detr"
    cfg.model.backbone.return_levels = [5]
    return cfg


@preset("detr-tiny")
def detr_tiny() -> Config:
    cfg = make_tiny(detr_r50())
    cfg.model.backbone.dilation = True  # DC5: a 256 px image gives 16x16 tokens instead of 8x8
    return cfg
