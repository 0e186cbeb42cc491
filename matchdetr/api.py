"""The Python API: build, load and train models (what the command line does, as functions).

    model = matchdetr.build("stable-dino-tiny")                     # a Model (matchdetr.model.Model)
    result = model.fit(data="runs/synthetic", out="runs/exp", iters=600)
    model = matchdetr.load("runs/exp")                              # a run directory or a .safetensors file
    result = matchdetr.train("dino-tiny", data="mydata", out="runs/x", epochs=12)   # without a Model first
    result = matchdetr.resume("runs/x")                             # continue a run where it stopped

Errors are exceptions with one-line messages (ConfigError, DatasetError, CheckpointError, ...), never
``sys.exit``.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch

from . import presets
from .compose.model import build_detector
from .config import Config, ConfigError, overridden, train_config
from .data.label_map import LabelMap
from .engine.checkpoint import CheckpointError, best_weights, load_weights, newest_weights
from .model import Model

def build_config(name: str, num_classes: int | None = None, overrides: dict[str, Any] | None = None) -> Config:
    cfg = presets.get(name)
    if num_classes is not None:
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        cfg.model.num_classes = num_classes
    return overridden(cfg, overrides)


def from_config(cfg: Config, label_map: LabelMap | None = None, *, fresh: bool = True) -> Model:
    """A Model of ``cfg`` (label map default: labels are their own ids, named ``class_<i>``)."""
    if label_map is None:
        n = cfg.model.num_classes
        label_map = LabelMap(list(range(n)), [f"class_{i}" for i in range(n)])
    if len(label_map) != cfg.model.num_classes:
        raise ConfigError(f"label map has {len(label_map)} classes but model.num_classes is {cfg.model.num_classes}")
    return Model(build_detector(cfg), cfg, label_map, fresh=fresh)


def build(name: str, num_classes: int | None = None, *, class_names: list[str] | None = None,
          **overrides: Any) -> Model:
    """A freshly initialised Model of preset ``name``.

    num_classes / class_names: its classes (names give the count; default: the preset's 91 ``class_<i>``);
    overrides: config values by dotted path relative to ``model`` (``transformer.num_queries=100``, or with ``__``
    for ``.`` as keyword names: ``transformer__num_queries=100``); ``train.*`` / ``data.*`` keys (or their bare
    names: ``lr=2e-4``) too."""
    if class_names is not None:
        if num_classes is not None and num_classes != len(class_names):
            raise ConfigError(f"num_classes={num_classes} but {len(class_names)} class_names")
        num_classes = len(class_names)
    cfg = build_config(name, num_classes, overrides)
    names = list(class_names) if class_names is not None else None
    labels = LabelMap(list(range(len(names))), names) if names is not None else None
    return from_config(cfg, labels)


def without_backbone_file(cfg: Config) -> Config:
    """A copy of ``cfg`` that builds without reading ``model.backbone.weights``: for a model whose weights are
    about to be loaded from a checkpoint, the backbone file is inside them already; reading it again would be
    wasted work, and an error once the file has moved."""
    out = copy.deepcopy(cfg)
    out.model.backbone.weights = None
    return out


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu", *, best: bool = False) -> Model:
    """Load a Model from a checkpoint file or a run directory: its newest complete weights, or with ``best=True``
    the weights of its best evaluation by val AP (``RUN/best.safetensors``)."""
    weights = best_weights(path) if best else newest_weights(path)
    state, meta = load_weights(weights)
    if "config" not in meta or "label_map" not in meta:
        raise CheckpointError(f"{weights}: metadata lacks config/label_map")
    cfg = Config.from_dict(meta["config"])
    module = build_detector(without_backbone_file(cfg))
    missing, unexpected = sorted(set(module.state_dict()) - set(state)), sorted(set(state) - set(module.state_dict()))
    if missing or unexpected:
        raise CheckpointError(f"{weights}: weights do not fit preset '{cfg.preset}': missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    try:
        module.load_state_dict(state)
    except RuntimeError as err:  # shape mismatches
        raise CheckpointError(f"{weights}: weights do not fit preset '{cfg.preset}': {str(err).splitlines()[-1].strip()}") from None
    # config as saved, model.backbone.weights included (where the backbone started from)
    return Model(module.to(map_location).eval(), cfg, LabelMap.from_dict(meta["label_map"]))


# ----------------------------------------------------------------------------------------------- training
def train(config: Config | str, data: str | os.PathLike | None = None, out: str | os.PathLike = "runs/train", *,
          iters: int | None = None, epochs: int | None = None, batch_size: int | None = None, resume: bool = False,
          exist_ok: bool = False, device: str = "auto", val: bool = True, progress: bool = True,
          initial: Any = None, **overrides: Any) -> Any:
    """Train a preset (by name) or a Config on ``data`` into ``out``; returns the TrainResult (``.metrics``: the
    final evaluation, ``.module``: the trained detector). The keyword arguments are :meth:`Model.fit`'s."""
    from .engine.train import train as run

    cfg = presets.get(config) if isinstance(config, str) else copy.deepcopy(config)
    cfg = train_config(overridden(cfg, overrides), data, iters, epochs, batch_size)
    result = run(cfg, out, device=device, resume=resume, progress=progress, exist_ok=exist_ok, val=val, initial=initial)
    if val:
        from .reports.val_predictions import write_run_predictions

        write_run_predictions(result)
    return result


def resume(run_dir: str | os.PathLike, *, iters: int | None = None, epochs: int | None = None, device: str = "auto",
           progress: bool = True) -> Any:
    """Continue the run in ``run_dir`` from its newest complete checkpoint, with the config it saved (its
    ``config.json``: model, data, recipe); ``iters`` / ``epochs`` extend or shorten it."""
    from .engine.run_dir import saved_config

    cfg = saved_config(run_dir)
    if iters is not None or epochs is not None:
        cfg.train.iters, cfg.train.epochs = iters, epochs if epochs is not None else cfg.train.epochs
    return train(cfg, None, run_dir, resume=True, device=device, progress=progress)


def eval_split(model: Model, paths: Any) -> Any:
    """The split ``paths`` (a resolved ``SplitPaths``) as ``model`` is evaluated on it (its own test-time
    transforms and label map; ``engine.evaluate.eval_dataset``)."""
    from .engine.evaluate import eval_dataset

    return eval_dataset(model.config, model.label_map, paths)
