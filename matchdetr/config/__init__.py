"""The configuration: nested typed dataclasses (``schema``; the model section with one config per component in
``compose/model_config.py``), read from dicts and ``key.sub=value`` strings (``tree``), older flat configs
migrated (``migrate``), ranges and relations checked (``checks``), files read (``files``).

The names are imported on first use (PEP 562): ``tree`` (and so :class:`ConfigError`) is torch-free, while the
schema imports the components' configs, which import torch; the ONNX-only path needs only the former.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Config": "schema", "DataConfig": "schema", "TrainConfig": "schema", "apply_override": "schema",
    "apply_overrides": "schema", "normalise_key": "schema", "overridden": "schema", "train_config": "schema",
    "LossConfig": "..compose.model_config", "MatcherConfig": "..compose.model_config",
    "ModelConfig": "..compose.model_config", "PostprocessConfig": "..compose.model_config",
    "TransformerConfig": "..compose.model_config",
    "ConfigError": "tree", "did_you_mean": "tree", "from_dict": "tree", "set_value": "tree", "to_dict": "tree",
    "valid_keys": "tree",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = _EXPORTS[name]
        return getattr(import_module(module if module.startswith("..") else f".{module}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
