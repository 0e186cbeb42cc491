"""Typed values into nested config dataclasses, for any such tree: from dicts (a checkpoint's JSON) and from
``key.sub=value`` strings, each value checked against the field's annotation, an unknown key answered with the
closest valid names. Nothing is evaluated."""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from typing import Any


class ConfigError(ValueError):
    """A bad override key or value; the message is one line that names the key and what is valid."""


def from_dict(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    names = {f.name for f in dataclasses.fields(cls)}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key '{path}'; {did_you_mean(key, sorted(names))}"
                              f"valid keys here: {', '.join(sorted(names))}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{path}' must be a mapping, got {type(value).__name__}")
            kwargs[key] = from_dict(hint, value, path + ".")
        else:
            kwargs[key] = coerce(value, hint, path)
    return cls(**kwargs)


def coerce(value: Any, hint: Any, path: str) -> Any:
    """Convert ``value`` (parsed JSON or a raw string) to the annotated type, or raise ConfigError."""
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as err:
                    raise ConfigError(f"config key '{path}' expects a list, could not parse {value!r}: {err}")
            else:
                value = [v for v in text.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{path}' expects a list, got {value!r}")
        return [coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"config key '{path}' expects a bool (true/false), got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"config key '{path}' expects {hint.__name__}, got {value!r}")
        try:
            if hint is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            if hint is int and isinstance(value, str):
                return int(value.strip())
            return hint(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{path}' expects {hint.__name__}, got {value!r}") from None
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{path}' expects a string, got {value!r}")
        return value
    raise ConfigError(f"config key '{path}' has an unsupported type {hint}")


def did_you_mean(key: str, candidates: list[str]) -> str:
    """``"did you mean 'train.lr'? "`` for the closest candidates (also matching on the last part alone, so
    ``train.keeplast`` finds ``train.keep_last`` and ``num_query`` finds ``model.transformer.num_queries``), or ``""``."""
    close = difflib.get_close_matches(key, candidates, n=2, cutoff=0.8)
    if not close:
        by_leaf = {c.rsplit(".", 1)[-1]: c for c in candidates}
        close = [by_leaf[m] for m in difflib.get_close_matches(key.rsplit(".", 1)[-1], list(by_leaf), n=2, cutoff=0.75)]
    return f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""


def valid_keys(cls: type, prefix: str = "") -> list[str]:
    """Every overridable dotted key of ``cls``."""
    keys: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys += valid_keys(hints[f.name], f"{prefix}{f.name}.")
        elif f.name != "preset":
            keys.append(f"{prefix}{f.name}")
    return keys


def set_value(cfg: Any, key: str, value: Any) -> None:
    """Set dotted ``key`` on a config tree, coercing ``value`` to the field's type."""
    parts = key.split(".")
    node = cfg
    for depth, name in enumerate(parts):
        if not dataclasses.is_dataclass(node):
            raise ConfigError(f"unknown config key '{key}'")
        names = [f.name for f in dataclasses.fields(node)]
        if name not in names:
            here = ".".join(parts[:depth])
            sub = valid_keys(type(node), f"{here}." if here else "")
            raise ConfigError(f"unknown config key '{key}'; {did_you_mean(key, valid_keys(type(cfg)))}"
                              f"valid keys{f' under {here}' if here else ''}: {', '.join(sub)}")
        hint = typing.get_type_hints(type(node))[name]
        if depth == len(parts) - 1:
            if dataclasses.is_dataclass(hint):
                raise ConfigError(f"config key '{key}' is a section; set one of its fields, e.g. {key}.<field>")
            setattr(node, name, coerce(value, hint, key))
        else:
            node = getattr(node, name)
