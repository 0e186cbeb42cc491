"""Every number of every config states its valid range beside its field (``fields.knob``), and a value outside
it is refused in one line naming the key, from the CLI and from Python alike: a walk over every field of every
section and every kind of every component."""

from __future__ import annotations

import dataclasses
import typing

import pytest

import matchdetr
from matchdetr import presets
from matchdetr.compose import model_config
from matchdetr.config import Config, ConfigError, set_value
from matchdetr.config.checks import check_config
from matchdetr.config.tree import _hints, _optional
from matchdetr.fields import Kinds, Range

# Numbers that are any real value by nature, each with the reason.
FREE = {
    "seed": "any integer seeds the generators",
    "pos_offset": "a coordinate offset; the releases use 0 and -0.5",
}
TABLES = {name: t for name, t in vars(model_config).items() if isinstance(t, Kinds)}


def _numeric_fields(cls: type) -> list[dataclasses.Field]:
    out = []
    for f in dataclasses.fields(cls):
        hint = _optional(_hints(cls)[f.name])[1]
        inner = typing.get_args(hint)[0] if typing.get_origin(hint) is list else hint
        if inner in (int, float):
            out.append(f)
    return out


def _sections() -> list[type]:
    cfg = Config()
    return [type(cfg.data), type(cfg.train), model_config.ModelConfig, model_config.TransformerConfig,
            model_config.MatcherConfig, model_config.LossConfig, model_config.PostprocessConfig] + \
        [cls for t in TABLES.values() for cls in t.classes.values()]


@pytest.mark.parametrize("cls", _sections(), ids=lambda c: c.__name__)
def test_every_number_states_its_range(cls: type) -> None:
    missing = [f.name for f in _numeric_fields(cls) if "range" not in f.metadata and f.name not in FREE]
    assert not missing, f"{cls.__name__}: {missing}"


def _bad(rng: Range, value: object) -> object:
    """A value just outside ``rng`` of the type of ``value``."""
    if isinstance(value, list):
        return [_bad(rng, value[0] if value else 1)] if rng.ge is not None or rng.gt is not None or rng.le is not None \
            or rng.lt is not None or rng.choices else []
    if rng.choices is not None:
        return -12345 if isinstance(value, (int, float)) else "no-such-choice"
    if rng.ge is not None:
        return type(value)(rng.ge - 1)
    if rng.gt is not None:
        return type(value)(rng.gt)
    if rng.le is not None:
        return type(value)(rng.le + 1)
    return type(value)(rng.lt)


def _cases() -> list[tuple[str, str]]:
    """(preset, dotted key) for every ranged leaf of every kind of every component, each kind placed in a preset
    that builds it."""
    cases: list[tuple[str, str]] = []
    for path, owner, f, value in _leaves(presets.get("stable-dino-tiny")):
        cases.append(("stable-dino-tiny", path))
    for slot, table in (("model.loss.class_loss", "CLASS_LOSSES"), ("model.matcher.class_cost", "CLASS_COSTS"),
                        ("model.denoising", "DENOISING"), ("model.backbone", "BACKBONES"), ("model.arch", "ARCHS"),
                        ("model.hybrid", "HYBRID"), ("model.loss.mask", "MASK_LOSSES"),
                        ("model.matcher.mask_cost", "MASK_COSTS")):
        for kind, cls in TABLES[table].classes.items():
            for f in dataclasses.fields(cls):
                if "range" in f.metadata:
                    cases.append((f"{slot}={kind}", f"{slot}.{f.name}"))
    return sorted(set(cases))


def _leaves(cfg: Config):
    from matchdetr.config.tree import walk

    for path, owner, f, value in walk(cfg):
        if "range" in f.metadata and value is not None:
            yield path, owner, f, value


@pytest.mark.parametrize("base,key", _cases())
def test_an_out_of_range_value_is_refused_naming_the_key(base: str, key: str) -> None:
    cfg = presets.get("stable-dino-tiny")
    if "=" in base:
        slot, kind = base.split("=")
        set_value(cfg, slot, kind)
    node = cfg
    *parents, leaf = key.split(".")
    for p in parents:
        node = getattr(node, p)
    f = next(f for f in dataclasses.fields(node) if f.name == leaf)
    value = getattr(node, leaf)
    if value is None:
        value = 1.0 if _optional(_hints(type(node))[leaf])[1] is float else 1
    bad = _bad(f.metadata["range"], value)
    try:
        set_value(cfg, key, bad)  # a type the field takes; the range is checked when the config is used
    except ConfigError as err:  # a choice of another type is refused at once, also naming the key
        assert key in str(err) and "\n" not in str(err)
        return
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    assert f"'{key}'" in str(err.value) and "\n" not in str(err.value)


def test_the_examples_of_the_issue_end_in_one_line(tmp_path) -> None:
    with pytest.raises(ConfigError, match="'model.loss.class_loss.gamma' must be >= 0, got -1.0"):
        matchdetr.build("dino-tiny", **{"loss.class_loss": "matchability_aware", "loss.class_loss.gamma": -1})
    with pytest.raises(ConfigError, match="'model.loss.class_loss.gamma' must be >= 0, got -2.0"):
        matchdetr.build("dino-tiny", **{"loss.class_loss.gamma": -2})
    with pytest.raises(ConfigError, match=r"'model.loss.class_loss.alpha' must be in \[0, 1\], got 1.5"):
        matchdetr.build("dino-tiny", **{"loss.class_loss.alpha": 1.5})
    with pytest.raises(ConfigError, match="'train.lr' must be >= 0"):
        check_config(matchdetr.api.build_config("dino-tiny", overrides={"train.lr": float("nan")}))
