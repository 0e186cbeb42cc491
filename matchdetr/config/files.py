"""Configs from files: a run's ``config.json`` (every key), or a JSON / YAML file of some keys on top of a preset.

    preset: dino-tiny                 # the base (optional; else the --model preset, else the defaults)
    model:
      loss:
        class_loss: {kind: varifocal, gamma: 1.5}
    train: {lr: 2.0e-4, iters: 800}

Keys not in the file keep the base's values; a component slot given as a mapping with a ``kind`` is that kind
(its other fields from that kind's defaults), without one it edits the kind the base holds. Older flat
configs are migrated first. YAML is read with ``yaml.safe_load`` (PyYAML); nothing is ever evaluated.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from .migrate import migrate
from .schema import Config
from .tree import ConfigError, _fields, _kinds, set_value


def merge(root: Any, data: dict[str, Any], prefix: str = "") -> None:
    """Set every key of the nested mapping ``data`` on the config tree ``root`` (in place); ``prefix``: where
    ``data`` sits in the tree (its keys are named in full in the errors)."""
    if not isinstance(data, dict):
        raise ConfigError(f"config key '{prefix.rstrip('.') or '<root>'}' must be a mapping, got {type(data).__name__}")
    node = root
    for part in prefix.rstrip(".").split(".") if prefix else []:
        node = getattr(node, part)
    fields = _fields(node)
    for key, value in data.items():
        child = getattr(node, key, None) if key in fields else None
        if key in fields and _kinds(fields[key]) is None and dataclasses.is_dataclass(child) and isinstance(value, dict):
            merge(root, value, f"{prefix}{key}.")
        else:
            set_value(root, f"{prefix}{key}", value)


def read_config_file(path: str | os.PathLike, base: Config | None = None) -> Config:
    """The config of a JSON or YAML file: merged onto ``base``, else onto the file's ``preset``, else onto the
    defaults. One-line errors name the file."""
    from .. import presets

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--config {file}: no such file")
    text = file.read_text(encoding="utf-8")
    if file.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"{file}: reading YAML needs PyYAML (pip install pyyaml); JSON works without") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"{file}: not readable YAML ({str(err).splitlines()[0]})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{file}: not readable JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: a config file holds a mapping of sections (model, data, train), got {type(data).__name__}")
    data = migrate(data)
    preset = data.pop("preset", "") or ""
    cfg = base if base is not None else (presets.get(preset) if preset else Config())
    try:
        merge(cfg, data)
    except ConfigError as err:
        raise ConfigError(f"{file}: {err}") from None
    if preset and not cfg.preset:
        cfg.preset = preset
    return cfg
