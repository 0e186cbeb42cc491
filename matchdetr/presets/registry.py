"""The preset registry: each family module registers its Config functions with :func:`preset`; names, old
names (``ALIASES``) and lookups with a one-line error."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Callable

from ..config.tree import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Config

# The modules that register presets, imported on the first lookup.
FAMILIES = ("detr_family", "stable", "sam_detr", "mask_dino", "swin")

_PRESETS: dict[str, Callable[[], Config]] = {}

# Names follow ``<family>[-<variant>...]-<size>``, the size (``r50`` / ``tiny``) last. These older names broke
# that order; they still resolve (scripts, docs, saved commands) to the preset now registered under the new one.
ALIASES: dict[str, str] = {
    "deformable-detr-r50-refine": "deformable-detr-refine-r50",
    "deformable-detr-r50-two-stage": "deformable-detr-two-stage-r50",
    "sam-detr-r50-dc5": "sam-detr-dc5-r50",
}


def preset(name: str) -> Callable[[Callable[[], Config]], Callable[[], Config]]:
    def register(fn: Callable[[], Config]) -> Callable[[], Config]:
        _PRESETS[name] = fn
        return fn

    return register


def _load() -> None:
    if not _PRESETS:
        for family in FAMILIES:
            import_module(f"{__package__}.{family}")


def names() -> list[str]:
    """The registered preset names (aliases not included)."""
    _load()
    return sorted(_PRESETS)


def canonical(name: str) -> str:
    """The registered name of ``name`` (itself, or what its alias points to); a one-line ConfigError when
    unknown, with the closest names."""
    _load()
    name = ALIASES.get(name, name)
    if name not in _PRESETS:
        import difflib

        close = difflib.get_close_matches(name, list(_PRESETS) + list(ALIASES), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise ConfigError(f"unknown preset '{name}'; {hint}available: {', '.join(names())}")
    return name


def get(name: str) -> Config:
    """A fresh Config for preset ``name`` or one of its old names (``ALIASES``); ``cfg.preset`` is the
    registered name. Raises a one-line ConfigError listing the presets."""
    name = canonical(name)
    cfg = _PRESETS[name]()
    cfg.preset = name
    return cfg
