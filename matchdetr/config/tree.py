"""Typed values into nested config dataclasses, for any such tree: from dicts (a checkpoint's JSON, a YAML file)
and from ``key.sub=value`` strings, each value checked against the field's annotation and its stated range
(``matchdetr.fields.knob``), an unknown key answered with the closest valid names. Nothing is evaluated.

A slot declared with ``matchdetr.fields.one_of`` holds one component config out of a table of kinds: it reads
``"varifocal"`` (that kind with its defaults), ``{"kind": "varifocal", "gamma": 1.5}``, or ``null`` / ``none``
where the slot may be off; ``a.b.slot.field=v`` sets a field of the kind it holds.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import io
import json
import textwrap
import tokenize
import typing
from functools import lru_cache
from typing import Any

from ..fields import Kinds, Range


class ConfigError(ValueError):
    """A bad override key or value; the message is one line that names the key and what is valid."""


_NONE_WORDS = ("none", "null", "off")


# ----------------------------------------------------------------------------------------- field facts
@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _kinds(f: dataclasses.Field) -> Kinds | None:
    return f.metadata.get("kinds")


def _optional(hint: Any) -> tuple[bool, Any]:
    """``(True, X)`` for ``X | None``, else ``(False, hint)``."""
    args = typing.get_args(hint)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return True, (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)])
    return False, hint


def _fields(node: Any) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(node) if f.init}


@lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """The comment of each field of dataclass ``cls``: the ``# ...`` on the lines of its declaration, after
    the comment lines just above it (read from the source, so the comments in the code are the documentation)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = source.splitlines()
    body = ast.parse(source).body[0]
    docs: dict[str, str] = {}
    for stmt in getattr(body, "body", []):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            above, n = [], stmt.lineno - 1
            while n >= 1 and n in comments and lines[n - 1].strip().startswith("#"):
                above.insert(0, comments[n])
                n -= 1
            own = [comments[i] for i in range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1) if i in comments]
            text = " ".join(above + own).strip()
            if text:
                docs[stmt.target.id] = text
    return docs


# --------------------------------------------------------------------------------------------- reading
def from_dict(cls: type, data: dict[str, Any], prefix: str) -> Any:
    """An instance of dataclass ``cls`` from a mapping (unknown keys refused with the valid ones)."""
    if not isinstance(data, dict):
        raise ConfigError(f"config key '{prefix.rstrip('.') or '<root>'}' must be a mapping, got {type(data).__name__}")
    kwargs: dict[str, Any] = {}
    fields = _fields(cls)
    hints = _hints(cls)
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in fields:
            names = sorted(fields)
            raise ConfigError(f"unknown config key '{path}'; {did_you_mean(key, names)}"
                              f"valid keys here: {', '.join(names) or '(none)'}")
        kwargs[key] = _value(fields[key], hints[key], value, path, None)
    return cls(**kwargs)


def _component(kinds: Kinds, value: Any, path: str, current: Any, may_be_off: bool) -> Any:
    """A component config from ``"kind"``, ``{"kind": ..., fields}``, a JSON string of that, or none/null."""
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ConfigError(f"config key '{path}' could not parse {value!r}: {err}") from None
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
        if not may_be_off:
            raise ConfigError(f"config key '{path}' cannot be off; valid: {', '.join(kinds.names())}")
        return None
    if dataclasses.is_dataclass(value) and kinds.owns(value):
        return value
    if isinstance(value, str):
        kind, fields = value.strip(), {}
    elif isinstance(value, dict):
        fields = dict(value)
        kind = fields.pop("kind", None)
        if kind is None:  # a partial mapping edits the kind the slot holds
            if current is None:
                raise ConfigError(f"config key '{path}' needs a 'kind' ({', '.join(kinds.names())})")
            kind = current.kind
            fields = {**{f.name: getattr(current, f.name) for f in dataclasses.fields(current)}, **fields}
    else:
        raise ConfigError(f"config key '{path}' expects a {kinds.what} ({', '.join(kinds.names())}), got {value!r}")
    if kind not in kinds:
        raise ConfigError(f"config key '{path}': unknown {kinds.what} {kind!r}; "
                          f"{did_you_mean(str(kind), kinds.names())}valid: {', '.join(kinds.names())}"
                          + (", none" if may_be_off else ""))
    return from_dict(kinds[kind], fields, f"{path}.")


def _value(f: dataclasses.Field, hint: Any, value: Any, path: str, current: Any) -> Any:
    optional, inner = _optional(hint)
    kinds = _kinds(f)
    if kinds is not None:
        return _component(kinds, value, path, current, optional)
    if dataclasses.is_dataclass(inner):
        if isinstance(value, inner):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{path}' must be a mapping, got {type(value).__name__}")
        return from_dict(inner, value, path + ".")
    return coerce(value, hint, path)


def coerce(value: Any, hint: Any, path: str) -> Any:
    """Convert ``value`` (parsed JSON or a raw string) to the annotated type, or raise ConfigError."""
    optional, hint = _optional(hint)
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS)):
        return None
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
    none_hint = " or none" if optional else ""
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"config key '{path}' expects a bool (true/false){none_hint}, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"config key '{path}' expects {hint.__name__}{none_hint}, got {value!r}")
        try:
            if hint is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            if hint is int and isinstance(value, str):
                return int(value.strip())
            return hint(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{path}' expects {hint.__name__}{none_hint}, got {value!r}") from None
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{path}' expects a string{none_hint}, got {value!r}")
        return value
    raise ConfigError(f"config key '{path}' has an unsupported type {hint}")


# --------------------------------------------------------------------------------------------- writing
def to_dict(node: Any) -> Any:
    """A JSON-ready dict of a config tree; component configs carry their ``kind``."""
    if not dataclasses.is_dataclass(node):
        return list(node) if isinstance(node, (list, tuple)) else node
    out: dict[str, Any] = {"kind": node.kind} if isinstance(getattr(type(node), "kind", None), str) else {}
    for f in dataclasses.fields(node):
        out[f.name] = to_dict(getattr(node, f.name))
    return out


def did_you_mean(key: str, candidates: list[str]) -> str:
    """``"did you mean 'train.lr'? "`` for the closest candidates (also matching on the last part alone, so
    ``train.keeplast`` finds ``train.keep_last`` and ``num_query`` finds ``model.transformer.num_queries``), or ``""``."""
    close = difflib.get_close_matches(key, candidates, n=2, cutoff=0.8)
    if not close:
        by_leaf = {c.rsplit(".", 1)[-1]: c for c in candidates}
        close = [by_leaf[m] for m in difflib.get_close_matches(key.rsplit(".", 1)[-1], list(by_leaf), n=2, cutoff=0.75)]
    return f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""


def valid_keys(node: Any, prefix: str = "") -> list[str]:
    """Every settable dotted key of the config tree ``node`` (a component slot lists the slot itself and the
    fields of the kind it holds; a class stands for its default instance)."""
    if isinstance(node, type):
        node = node()
    keys: list[str] = []
    hints = _hints(type(node))
    for name, f in _fields(node).items():
        value = getattr(node, name)
        if _kinds(f) is not None:
            keys.append(f"{prefix}{name}")
            if value is not None:
                keys += valid_keys(value, f"{prefix}{name}.")
        elif dataclasses.is_dataclass(_optional(hints[name])[1]) and value is not None:
            keys += valid_keys(value, f"{prefix}{name}.")
        elif name != "preset":
            keys.append(f"{prefix}{name}")
    return keys


def _unknown(cfg: Any, key: str, node: Any, depth: int, parts: list[str], slot: dataclasses.Field | None) -> ConfigError:
    here = ".".join(parts[:depth])
    name = parts[depth]
    hint = ""
    if slot is not None:  # a field of another kind of this slot?
        kinds = _kinds(slot)
        assert kinds is not None
        owners = [k for k, c in kinds.classes.items() if name in {f.name for f in dataclasses.fields(c)}]
        if owners:
            hint = (f"'{here}' is {node.kind}, which has no '{name}'; {' and '.join(repr(o) for o in owners)} "
                    f"{'has' if len(owners) == 1 else 'have'} it (set {here}={owners[0]} first). ")
    sub = valid_keys(node, f"{here}." if here else "")
    return ConfigError(f"unknown config key '{key}'; {hint}{did_you_mean(key, valid_keys(cfg))}"
                       f"valid keys{f' under {here}' if here else ''}: {', '.join(sub) or '(none)'}")


def set_value(cfg: Any, key: str, value: Any) -> None:
    """Set dotted ``key`` on a config tree, coercing ``value`` to the field's type (a component slot takes a
    kind name, a mapping or none)."""
    parts = key.split(".")
    node, slot = cfg, None
    for depth, name in enumerate(parts):
        fields = _fields(node)
        if name not in fields:
            raise _unknown(cfg, key, node, depth, parts, slot)
        f, hint = fields[name], _hints(type(node))[name]
        child = getattr(node, name)
        if depth == len(parts) - 1:
            if _kinds(f) is None and dataclasses.is_dataclass(_optional(hint)[1]) and not isinstance(value, dict):
                raise ConfigError(f"config key '{key}' is a section; set one of its fields, e.g. {key}.<field>")
            setattr(node, name, _value(f, hint, value, key, child))
            return
        if child is None:
            kinds = _kinds(f)
            choices = f" (one of {', '.join(kinds.names())})" if kinds else ""
            raise ConfigError(f"config key '{key}': '{'.'.join(parts[:depth + 1])}' is off; turn it on first with "
                              f"{'.'.join(parts[:depth + 1])}=<kind>{choices}")
        if not dataclasses.is_dataclass(child):
            raise ConfigError(f"unknown config key '{key}'; '{'.'.join(parts[:depth + 1])}' is a value, not a section")
        node, slot = child, (f if _kinds(f) is not None else None)


# ------------------------------------------------------------------------------------------------ ranges
def walk(node: Any, prefix: str = "") -> typing.Iterator[tuple[str, Any, dataclasses.Field, Any]]:
    """``(dotted key, owner, field, value)`` for every leaf value and component slot of a config tree."""
    hints = _hints(type(node))
    for name, f in _fields(node).items():
        value = getattr(node, name)
        path = f"{prefix}{name}"
        yield path, node, f, value
        if value is not None and dataclasses.is_dataclass(value) and (
                _kinds(f) is not None or dataclasses.is_dataclass(_optional(hints[name])[1])):
            yield from walk(value, path + ".")


def check_ranges(node: Any, prefix: str = "") -> None:
    """Every value of the tree within the range its field states (``fields.knob``), else a one-line
    ConfigError naming the key and what is valid. ``None`` is valid wherever the type allows it."""
    leaves = list(walk(node, prefix))
    for path, owner, f, value in leaves:
        rng: Range | None = f.metadata.get("range")
        if rng is not None and value is not None and not rng.ok(value):
            off = " (or none)" if _optional(_hints(type(owner))[f.name])[0] else ""
            raise ConfigError(f"config key '{path}' must be {rng.describe()}{off}, got {value!r}")
    for path, owner, f, value in leaves:  # relations after every single value is known to be in range
        validate = getattr(value, "validate", None) if dataclasses.is_dataclass(value) else None
        if validate is not None:  # a component's own check of what a range cannot state
            try:
                validate()
            except ValueError as err:
                raise ConfigError(f"config key '{path}': {err}") from None
