"""Study entries that are not presets: a preset plus config overrides, named ``<preset>+<what>`` (the
IoU-aware loss comparison). The run directory and the table row carry that name; the saved config is the preset's with
the overrides applied."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Config

VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "dino-tiny+psl": ("dino-tiny", ("model.loss.class_loss=position_supervised",)),
    "dino-tiny+vfl": ("dino-tiny", ("model.loss.class_loss=varifocal",)),
    "dino-tiny+qfl": ("dino-tiny", ("model.loss.class_loss=quality_focal",)),
    "dino-tiny+ia-bce": ("dino-tiny", ("model.loss.class_loss=ia_bce",)),
    "dino-tiny+mal": ("dino-tiny", ("model.loss.class_loss=matchability_aware",)),
    "dino-tiny+psl+pmc": ("dino-tiny", ("model.loss.class_loss=position_supervised",
                                        "model.matcher.class_cost=position_modulated")),
}


def model_config(name: str) -> Config:
    """The config of a study entry: a preset, or a :data:`VARIANTS` entry (its preset plus overrides). Unknown
    names are a one-line ConfigError listing the presets."""
    from .. import presets
    from ..config import apply_overrides

    if name in VARIANTS:
        base, overrides = VARIANTS[name]
        cfg = presets.get(base)
        apply_overrides(cfg, list(overrides))
        return cfg
    return presets.get(name)
