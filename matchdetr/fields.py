"""Config fields that state their valid values, and tagged unions of component configs.

Every component (a backbone, a class loss, a matching cost, a denoising scheme, ...) has a small dataclass of
its own knobs, defined beside the component, whose class attribute ``kind`` names it. A config slot that can
hold one of several kinds is declared with :func:`one_of` over a :class:`Kinds` table; it is saved as
``{"kind": "focal", "alpha": 0.25, ...}`` and switched with ``--set model.loss.class_loss=varifocal``.

Numbers are declared with :func:`knob`, which records the range the formula needs (``ge=0`` for an exponent,
``ge=0, le=1`` for a probability); ``matchdetr.config.tree`` checks every value against it when a config is
built, from the CLI and from Python alike. This module imports nothing of the package, so the components'
files (models/, losses/, matching/) can use it without reaching up to the config layer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, dataclass
from typing import Any, Callable, ClassVar, Iterable, Sequence


@dataclass(frozen=True)
class Range:
    """The valid values of a number (or of every item of a list of numbers): bounds, inclusive (``ge``, ``le``)
    or strict (``gt``, ``lt``); ``choices`` for a string or number from a fixed set; ``min_items`` for lists."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] | None = None
    min_items: int | None = None

    def ok(self, value: Any) -> bool:
        if isinstance(value, (list, tuple)):
            return (self.min_items is None or len(value) >= self.min_items) and all(self.ok(v) for v in value)
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value != value or value in (float("inf"), float("-inf")):  # NaN / inf: never a valid setting
                return False
            return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                    and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))
        return True

    def describe(self) -> str:
        """``>= 0``, ``in [0, 1]``, ``one of 'a', 'b'``, ``a list of >= 1 values, each >= 1`` ..."""
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            lo = f"[{self.ge:g}" if self.ge is not None else f"({self.gt:g}" if self.gt is not None else None
            hi = f"{self.le:g}]" if self.le is not None else f"{self.lt:g})" if self.lt is not None else None
            if lo and hi:
                text = f"in {lo}, {hi}"
            else:
                parts = [f">= {self.ge:g}" if self.ge is not None else "", f"> {self.gt:g}" if self.gt is not None else "",
                         f"<= {self.le:g}" if self.le is not None else "", f"< {self.lt:g}" if self.lt is not None else ""]
                text = " and ".join(p for p in parts if p) or "any value"
        if self.min_items:
            return f"a list of >= {self.min_items} values, each {text}" if text != "any value" else \
                f"a list of >= {self.min_items} values"
        return text


def knob(default: Any = MISSING, *, factory: Callable[[], Any] | None = None, ge: float | None = None,
         gt: float | None = None, le: float | None = None, lt: float | None = None,
         choices: Iterable[Any] | None = None, min_items: int | None = None) -> Any:
    """A dataclass field with its valid range: ``alpha: float = knob(0.25, ge=0, le=1)  # what it means``.

    ``factory`` for mutable defaults (lists). ``None`` is always valid for a field annotated ``X | None``."""
    rng = Range(ge, gt, le, lt, None if choices is None else tuple(choices), min_items)
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"range": rng})
    return dataclasses.field(default=default, metadata={"range": rng})


class Kinds:
    """One table per kind of component: ``kind`` name -> config dataclass (each class names itself with a
    ``kind`` class attribute). ``what`` names the slot in messages (``"class loss"``)."""

    def __init__(self, what: str, classes: Sequence[type]) -> None:
        self.what = what
        self.classes: dict[str, type] = {}
        for cls in classes:
            kind = getattr(cls, "kind", None)
            if not isinstance(kind, str) or not dataclasses.is_dataclass(cls):
                raise TypeError(f"{cls.__name__} is not a component config (a dataclass with a `kind` class attribute)")
            if kind in self.classes:
                raise TypeError(f"two {what} configs are both named {kind!r}")
            self.classes[kind] = cls

    def register(self, cls: type) -> type:
        """Add a kind at run time (a component defined outside the package; usable as a class decorator). The
        components of the package are listed in their table instead."""
        if not isinstance(getattr(cls, "kind", None), str) or not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls.__name__} is not a component config (a dataclass with a `kind` class attribute)")
        if cls.kind in self.classes and self.classes[cls.kind] is not cls:
            raise TypeError(f"a {self.what} named {cls.kind!r} exists already")
        self.classes[cls.kind] = cls
        return cls

    def names(self) -> list[str]:
        return list(self.classes)

    def __contains__(self, kind: object) -> bool:
        return kind in self.classes

    def __getitem__(self, kind: str) -> type:
        return self.classes[kind]

    def owns(self, value: Any) -> bool:
        """Whether ``value`` is an instance of one of the table's configs."""
        return type(value) in self.classes.values()


def one_of(kinds: Kinds, default: type | None) -> Any:
    """A slot holding one of ``kinds`` (default: an instance of ``default`` with its defaults), or ``None`` when
    ``default`` is None (the component is off)."""
    if default is None:
        return dataclasses.field(default=None, metadata={"kinds": kinds})
    if default not in kinds.classes.values():
        raise TypeError(f"{default.__name__} is not in the {kinds.what} table")
    return dataclasses.field(default_factory=default, metadata={"kinds": kinds})


class Component:
    """Base of every component config: ``kind`` names it in saved configs and in ``--set slot=kind``."""

    kind: ClassVar[str] = ""


__all__ = ["Component", "Kinds", "Range", "knob", "one_of"]
