"""Values a config can hold but that make no sense (``num_queries=0``, ``keep_last=0``, a negative exponent, a
probability above 1): refused in one line naming the key, before anything is built or trained. The valid range
of each number is stated beside its field (``matchdetr.fields.knob``); relations between fields are checked
here. Values that are legal but probably not meant (a warm-up longer than the run, a learning-rate drop after
its end) give a warning and are used as given.
"""

from __future__ import annotations

import warnings

from ..compose.model_config import ModelConfig
from .schema import Config, TrainConfig
from .tree import ConfigError, check_ranges


def check_model(m: ModelConfig) -> None:
    """Ranges and relations of the model section (ConfigError naming the key)."""
    check_ranges(m, "model.")
    t = m.transformer
    if t.hidden_dim % t.num_heads:
        raise ConfigError(f"config key 'model.transformer.hidden_dim' ({t.hidden_dim}) must be divisible by "
                          f"'model.transformer.num_heads' ({t.num_heads})")


def check_config(cfg: Config) -> None:
    """Ranges and relations of every section."""
    check_model(cfg.model)
    check_ranges(cfg.data, "data.")
    check_ranges(cfg.train, "train.")
    d = cfg.data
    if d.crop_min > d.crop_max:
        raise ConfigError(f"config key 'data.crop_min' ({d.crop_min}) must be <= 'data.crop_max' ({d.crop_max})")
    for key in ("mean", "std"):
        if len(getattr(d, key)) != 3:
            raise ConfigError(f"config key 'data.{key}' must hold 3 values (RGB), got {getattr(d, key)!r}")


def schedule_warnings(cfg: TrainConfig, total_iters: int, iters_per_epoch: int = 1) -> None:
    """Warn about legal but probably unintended schedules of a run of ``total_iters`` iterations."""
    if cfg.warmup_iters > total_iters:
        warnings.warn(f"train.warmup_iters={cfg.warmup_iters} is longer than the run ({total_iters} iterations): "
                      f"the learning rate stays below train.lr={cfg.lr:g} throughout", stacklevel=2)
    if cfg.lr_drop is not None:
        drop = cfg.lr_drop * (1 if cfg.iters is not None else iters_per_epoch)
        if drop >= total_iters:
            unit = "iterations" if cfg.iters is not None else "epochs"
            length = cfg.iters if cfg.iters is not None else cfg.epochs
            warnings.warn(f"train.lr_drop={cfg.lr_drop:g} is at or after the end of the run ({length} {unit}): the "
                          f"learning rate never drops (set train.lr_drop inside the run, or none)", stacklevel=2)
    if cfg.early_stop_patience is not None and not cfg.eval_every:
        warnings.warn(f"train.early_stop_patience={cfg.early_stop_patience} without train.eval_every: only the final "
                      "evaluation runs, so the run never stops early (set train.eval_every)", stacklevel=2)


__all__ = ["check_config", "check_model", "schedule_warnings"]
