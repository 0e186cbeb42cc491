"""Values a config can hold but that make no sense (``num_queries=0``, ``keep_last=0``, a negative iteration
count): refused in one line naming the key, before anything is built or trained. Values that are legal but
probably not meant (a warm-up longer than the run) give a warning and are used as given.

The type of each value is already checked by ``config_values.coerce``; this is about ranges and relations.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

from . import Config, ConfigError, ModelConfig, TrainConfig

_Check = tuple[str, Callable[[Any], bool], str]  # (dotted key under its section, test, what is valid)

_AT_LEAST_1 = (lambda v: v >= 1, ">= 1")
_AT_LEAST_0 = (lambda v: v >= 0, ">= 0")
_UNIT = (lambda v: 0.0 <= v <= 1.0, "in [0, 1]")
_POSITIVE = (lambda v: v > 0, "> 0")


def _rule(key: str, rule: tuple[Callable[[Any], bool], str]) -> _Check:
    return key, rule[0], rule[1]


_MODEL: list[_Check] = [
    _rule("num_classes", _AT_LEAST_1), _rule("backbone.width", _AT_LEAST_1),
    _rule("backbone.pretrain_epochs", _AT_LEAST_0), ("backbone.pretrain_size", lambda v: v >= 8, ">= 8"),
    _rule("transformer.hidden_dim", _AT_LEAST_1), _rule("transformer.num_heads", _AT_LEAST_1),
    _rule("transformer.enc_layers", _AT_LEAST_0), _rule("transformer.dec_layers", _AT_LEAST_1),
    _rule("transformer.dim_feedforward", _AT_LEAST_1), ("transformer.dropout", lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    _rule("transformer.num_queries", _AT_LEAST_1), _rule("transformer.num_levels", _AT_LEAST_1),
    _rule("transformer.enc_points", _AT_LEAST_1), _rule("transformer.dec_points", _AT_LEAST_1),
    _rule("postprocess.topk", _AT_LEAST_1), _rule("postprocess.nms_iou", _UNIT),
    _rule("denoising.dn_number", _AT_LEAST_0), _rule("denoising.groups", _AT_LEAST_1),
    _rule("denoising.label_noise", _UNIT), _rule("denoising.box_noise", _AT_LEAST_0),
    _rule("hybrid.num_one2many", _AT_LEAST_0), _rule("hybrid.k", _AT_LEAST_1),
    _rule("sam.roi_size", _AT_LEAST_1),
    _rule("matcher.mask_points", _AT_LEAST_1), _rule("loss.mask_points", _AT_LEAST_1),
    ("loss.mask_oversample_ratio", lambda v: v >= 1, ">= 1"), _rule("loss.mask_importance_ratio", _UNIT),
]
_DATA: list[_Check] = [
    ("train_scales", lambda v: len(v) > 0 and min(v) >= 1, "a non-empty list of sizes >= 1"),
    _rule("train_max_size", _AT_LEAST_1), ("crop_resize_scales", lambda v: len(v) > 0 and min(v) >= 1,
                                           "a non-empty list of sizes >= 1"),
    _rule("crop_min", _AT_LEAST_1), _rule("test_size", _AT_LEAST_1), _rule("test_max_size", _AT_LEAST_1),
    _rule("hflip_prob", _UNIT), _rule("num_workers", _AT_LEAST_0),
    ("mean", lambda v: len(v) == 3, "3 values (RGB)"), ("std", lambda v: len(v) == 3 and min(v) > 0, "3 values > 0"),
]
_TRAIN: list[_Check] = [
    _rule("lr", _AT_LEAST_0), _rule("lr_backbone", _AT_LEAST_0), _rule("weight_decay", _AT_LEAST_0),
    _rule("clip_max_norm", _AT_LEAST_0), _rule("batch_size", _AT_LEAST_1), _rule("iters", _AT_LEAST_0),
    _rule("epochs", _AT_LEAST_0), _rule("lr_drop", _AT_LEAST_0), _rule("lr_drop_factor", _POSITIVE),
    _rule("warmup_iters", _AT_LEAST_0), ("ema_decay", lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    _rule("eval_every", _AT_LEAST_0), _rule("checkpoint_every", _AT_LEAST_1),
    ("keep_last", lambda v: v >= 1, ">= 1 (the newest checkpoint is what --resume continues from)"),
    _rule("max_nonfinite_skips", _AT_LEAST_1), _rule("log_every", _AT_LEAST_1), _rule("unstable_every", _AT_LEAST_0),
    _rule("unstable_images", _AT_LEAST_1), _rule("eval_threshold", _UNIT),
]


def _get(node: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def _run(section: str, node: Any, checks: list[_Check]) -> None:
    for key, ok, valid in checks:
        value = _get(node, key)
        numbers = value if isinstance(value, list) else [value]
        finite = all(not isinstance(v, float) or math.isfinite(v) for v in numbers)
        if not (finite and ok(value)):
            raise ConfigError(f"config key '{section}.{key}' must be {valid}, got {value!r}")


def check_model(m: ModelConfig) -> None:
    """Range checks of the model section (ConfigError naming the key)."""
    _run("model", m, _MODEL)
    t = m.transformer
    if t.hidden_dim % t.num_heads:
        raise ConfigError(f"config key 'model.transformer.hidden_dim' ({t.hidden_dim}) must be divisible by "
                          f"'model.transformer.num_heads' ({t.num_heads})")


def check_config(cfg: Config) -> None:
    """Range checks of every section, and the schedule: ``train.iters`` > 0, or ``train.epochs`` >= 1."""
    check_model(cfg.model)
    _run("data", cfg.data, _DATA)
    _run("train", cfg.train, _TRAIN)
    if cfg.train.iters == 0 and cfg.train.epochs < 1:
        raise ConfigError(f"config key 'train.epochs' must be >= 1 when train.iters is 0, got {cfg.train.epochs}")


def schedule_warnings(cfg: TrainConfig, total_iters: int) -> None:
    """Warn about legal but probably unintended schedules of a run of ``total_iters`` iterations."""
    if cfg.warmup_iters > total_iters:
        warnings.warn(f"train.warmup_iters={cfg.warmup_iters} is longer than the run ({total_iters} iterations): "
                      f"the learning rate stays below train.lr={cfg.lr:g} throughout", stacklevel=2)


__all__ = ["check_config", "check_model", "schedule_warnings"]
