"""The configuration: ``Config`` = ``model`` (``compose/model_config.py``: the architecture and one typed config
per component) + ``data`` + ``train``, nested dataclasses with a comment per field and the valid range of every
number. A preset (``presets/``) is a function returning a :class:`Config`. Configs are data: saved as JSON
inside checkpoints and read back with ``json`` (older flat configs are migrated, ``config/migrate.py``); nothing
is ever evaluated.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..compose.model_config import ModelConfig
from ..fields import knob
from .tree import ConfigError, from_dict, set_value, to_dict


# ---------------------------------------------------------------------------------------------------- data
@dataclass
class DataConfig:
    # The dataset (`matchdetr train --data`, `fit(data=...)`): a COCO, YOLO or VOC folder, or a data.yaml (stored
    # absolute); None: not set. A split's images folder or annotation file given on its own wins over it.
    path: str | None = None
    train_images: str | None = None  # the training images folder (--train-images)
    train_annotations: str | None = None  # the training annotation file (--train-ann)
    val_images: str | None = None  # the validation images folder (--val-images)
    val_annotations: str | None = None  # the validation annotation file (--val-ann)
    # Standard DETR augmentation (DETR appendix A.4, the releases' transforms): flip, then 50/50 multi-scale resize, or resize +
    # random crop + multi-scale resize. Sizes are shorter-side pixels.
    train_scales: list[int] = knob(factory=lambda: list(range(480, 801, 32)), ge=1, min_items=1)
    train_max_size: int = knob(1333, ge=1)  # the longer side is capped at this many pixels in training
    crop_resize_scales: list[int] = knob(factory=lambda: [400, 500, 600], ge=1, min_items=1)  # before the crop
    crop_min: int = knob(384, ge=1)  # the random crop's smallest side
    crop_max: int = knob(600, ge=1)  # the random crop's largest side
    test_size: int = knob(800, ge=1)  # shorter side at evaluation and prediction
    test_max_size: int = knob(1333, ge=1)  # the longer side's cap at evaluation and prediction
    hflip_prob: float = knob(0.5, ge=0, le=1)  # probability of a horizontal flip in training
    num_workers: int = knob(2, ge=0)  # DataLoader worker processes (0: load in the main process)
    # Read instance masks (each annotation's COCO `segmentation`) into Target.masks for instance segmentation;
    # off for box detection, which then never decodes a mask.
    masks: bool = False
    mean: list[float] = knob(factory=lambda: [0.485, 0.456, 0.406], min_items=3)  # normalisation mean, RGB
    std: list[float] = knob(factory=lambda: [0.229, 0.224, 0.225], gt=0, min_items=3)  # normalisation std, RGB


# --------------------------------------------------------------------------------------------------- train
@dataclass
class TrainConfig:
    lr: float = knob(1e-4, ge=0)  # AdamW learning rate of the transformer and heads
    lr_backbone: float = knob(1e-5, ge=0)  # learning rate of the backbone's trained stages
    weight_decay: float = knob(1e-4, ge=0)  # AdamW weight decay
    clip_max_norm: float | None = knob(0.1, gt=0)  # gradient-norm clipping; None: no clipping
    batch_size: int = knob(16, ge=1)  # images per process
    iters: int | None = knob(None, ge=1)  # iterations to train; None: train.epochs epochs
    epochs: int = knob(12, ge=1)  # epochs to train when train.iters is None
    # the step where lr becomes lr * lr_drop_factor, in the schedule's unit (an epoch, or an iteration with
    # train.iters); None: no drop. `--iters` / `--epochs` (and fit(iters=...)) move it with the schedule's length.
    lr_drop: float | None = knob(11.0, ge=0)
    lr_drop_factor: float = knob(0.1, gt=0)  # the learning rate's factor after the drop
    warmup_iters: int = knob(0, ge=0)  # linear warm-up from 0 over this many iterations
    # Parameters whose name contains one of these keys train at lr * lr_proj_mult (Deformable-DETR trains the
    # sampling-offset and reference-point projections at 0.1x).
    lr_proj_names: list[str] = field(default_factory=list)
    lr_proj_mult: float = knob(0.1, ge=0)  # the learning-rate factor of those parameters
    amp: str = knob("none", choices=("none", "bf16", "fp16"))  # mixed precision (fp16 on CUDA only; CPU runs fp32)
    compile: bool = False  # the model's forward through torch.compile (engine/compile.py); eager if unavailable
    # Recompute each encoder/decoder layer in the backward pass instead of storing its activations: less peak
    # memory for more time (models/layers.py: run_layer); the gradients are the same.
    checkpoint_activations: bool = False
    ema_decay: float = knob(0.0, ge=0, lt=1)  # > 0 keeps an exponential moving average of the weights
    eval_every: int | None = knob(None, ge=1)  # iterations between evaluations; None: only at the end
    checkpoint_every: int = knob(500, ge=1)  # iterations between checkpoints; the last iteration always saves
    keep_last: int = knob(2, ge=1)  # checkpoints kept on disk (the newest is what --resume continues from)
    # A step whose loss or gradient is NaN/inf is skipped with a warning; after this many in a row the run saves
    # a checkpoint and stops with a one-line explanation (the model is diverging, not hitting one bad batch).
    max_nonfinite_skips: int = knob(20, ge=1)
    log_every: int = knob(10, ge=1)  # iterations between log lines
    tensorboard: bool = False  # also write TensorBoard event files
    seed: int = 42  # seed of the weights, the augmentation and the batch order
    eval_threshold: float = knob(0.0, ge=0, le=1)  # score threshold of the COCO results file
    # Weights-only start (`matchdetr train --init`): a checkpoint file or run directory; the optimizer and the
    # schedule start fresh, and class heads are re-initialised when its class set differs (engine/finetune.py).
    init: str | None = None
    unstable_every: int | None = knob(None, ge=1)  # log the per-layer unstable score (Stable-DINO sec 2.4.3) this often
    unstable_images: int = knob(20, ge=1)  # ... on the first this-many validation images

    def set_length(self, iters: int | None = None, epochs: int | None = None) -> None:
        """Train for ``iters`` iterations or ``epochs`` epochs; the learning-rate drop keeps its place in the
        schedule (the drop at 1200 of 1500 iterations moves to 80 of 100). A drop set explicitly afterwards
        (``--set train.lr_drop=...``) is taken as given."""
        if (iters is None) == (epochs is None):
            raise ConfigError("set_length needs iters or epochs (one of them)")
        old = self.iters if self.iters is not None else self.epochs
        new = iters if iters is not None else epochs
        assert new is not None
        if self.lr_drop is not None and old:
            self.lr_drop = round(self.lr_drop * new / old, 6) if iters is None else int(self.lr_drop * new / old)
        self.iters, self.epochs = iters, (epochs if epochs is not None else self.epochs)


@dataclass
class Config:
    preset: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        """A Config from its dict (a checkpoint's, a config.json, a YAML file's), flat pre-component ones
        migrated first (``config/migrate.py``)."""
        from .migrate import migrate

        return from_dict(cls, migrate(data), "")


def apply_override(cfg: Config, assignment: str) -> None:
    """Apply one ``key.sub=value`` override in place; raises ConfigError with a one-line message."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like key.sub=value")
    key, raw = assignment.split("=", 1)
    set_value(cfg, key.strip(), raw)


def apply_overrides(cfg: Config, overrides: dict[str, Any] | list[str] | None) -> Config:
    """Apply ``{"a.b": value}`` or ``["a.b=value", ...]`` overrides in place and return ``cfg``."""
    if not overrides:
        return cfg
    if isinstance(overrides, dict):
        for key, value in overrides.items():
            set_value(cfg, key, value)
    else:
        for item in overrides:
            apply_override(cfg, item)
    return cfg


# ------------------------------------------------------------------------------ keyword overrides, training
_SECTIONS = ("model.", "data.", "train.")


def normalise_key(key: str) -> str:
    """``transformer__num_queries`` -> ``model.transformer.num_queries``; ``lr`` -> ``train.lr``; a key that starts
    with its section is kept."""
    key = key.replace("__", ".")
    if key.startswith(_SECTIONS):
        return key
    first = key.split(".", 1)[0]
    for section, cls in (("train", TrainConfig), ("data", DataConfig)):
        if first in cls.__dataclass_fields__:
            return f"{section}.{key}"
    return f"model.{key}"


def overridden(cfg: Config, overrides: dict[str, Any] | None) -> Config:
    """``cfg`` with keyword overrides applied (keys as :func:`normalise_key` reads them)."""
    return apply_overrides(cfg, {normalise_key(k): v for k, v in (overrides or {}).items()})


def train_config(cfg: Config, data: str | os.PathLike | None = None, iters: int | None = None,
                 epochs: int | None = None, batch_size: int | None = None) -> Config:
    """``cfg`` (in place) with the dataset ``data`` (stored absolute) and the schedule's length: ``iters`` or
    ``epochs`` (the learning-rate drop keeps its place in the schedule, ``TrainConfig.set_length``)."""
    if iters is not None and epochs is not None:
        raise ConfigError("give iters or epochs, not both")
    if data is not None:
        cfg.data.path = str(Path(data).expanduser().resolve())
    if iters is not None or epochs is not None:
        cfg.train.set_length(iters=iters, epochs=epochs)
    if batch_size is not None:
        cfg.train.batch_size = batch_size
    return cfg
