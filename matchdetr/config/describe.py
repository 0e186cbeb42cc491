"""Every key of a config with its value, the default of its field (or kind) and its meaning: what ``matchdetr
models --show PRESET`` prints. The meaning is the field's comment in the code (``tree.field_docs``), its valid
range the one ``fields.knob`` states; a component slot also lists the kinds it can hold. No torch here beyond
what the config classes import.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from ..fields import Kinds, Range
from .tree import _hints, _kinds, _optional, field_docs, walk  # the tree's own readers of field facts

_VALUE_COLUMN = 58  # "key = value" is padded to this width when it fits, so defaults and meanings line up


@dataclass(frozen=True)
class KeyInfo:
    key: str  # dotted, as --set takes it
    value: str  # as --set would write it
    default: str  # the field's default (for a component slot: the kind it holds by default, or none)
    meaning: str  # the field's comment, with its valid range
    kinds: tuple[str, ...] = ()  # for a component slot: every kind it can hold

    def line(self) -> str:
        head = f"{self.key} = {self.value}"
        kinds = f"; kinds: {', '.join(self.kinds)}" if self.kinds else ""
        return f"{head:<{_VALUE_COLUMN}} (default {self.default})  {self.meaning}{kinds}"


def show(value: Any) -> str:
    """A value as ``--set`` takes it: ``true``, ``none``, ``[480, 512]``, a kind's name, a bare string."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if dataclasses.is_dataclass(value):
        return str(getattr(value, "kind", type(value).__name__))
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value))
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def describe(cfg: Any) -> list[KeyInfo]:
    """One :class:`KeyInfo` per settable key of the config tree ``cfg`` (sections left out, ``preset`` too),
    in declaration order."""
    rows: list[KeyInfo] = []
    for key, owner, f, value in walk(cfg):
        kinds: Kinds | None = _kinds(f)
        hint = _hints(type(owner))[f.name]
        if kinds is None and (f.name == "preset" or dataclasses.is_dataclass(_optional(hint)[1])):
            continue  # a section: its keys follow
        meaning = field_docs(type(owner)).get(f.name, "")
        rng: Range | None = f.metadata.get("range")
        if rng is not None and rng.describe() != "any value":
            meaning = f"{meaning} ({rng.describe()})" if meaning else rng.describe()
        rows.append(KeyInfo(key, show(value), show(_default(f)), meaning,
                            tuple(kinds.names()) + (("none",) if _optional(hint)[0] else ()) if kinds else ()))
    return rows
