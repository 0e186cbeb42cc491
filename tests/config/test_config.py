"""The config tree: typed ``key=value`` overrides, component slots (tagged unions of configs), ranges, the
comments that document every field, and the JSON round trip."""

import dataclasses
import json

import pytest

from matchdetr import presets
from matchdetr.compose import model_config
from matchdetr.config import Config, ConfigError, apply_override, apply_overrides, valid_keys
from matchdetr.config.checks import check_config
from matchdetr.config.tree import field_docs, walk
from matchdetr.fields import Kinds
from matchdetr.losses.focal import FocalLossConfig
from matchdetr.losses.iou_aware import QualityFocalLossConfig, VarifocalLossConfig


def test_typed_overrides():
    cfg = presets.get("detr-r50")
    apply_overrides(cfg, ["model.transformer.num_queries=50", "train.lr=3e-4", "model.backbone.dilation=false",
                          "data.train_scales=[200,224]", "model.backbone.return_levels=3,4,5"])
    assert cfg.model.transformer.num_queries == 50 and cfg.train.lr == 3e-4
    assert cfg.model.backbone.dilation is False and cfg.data.train_scales == [200, 224]
    assert cfg.model.backbone.return_levels == [3, 4, 5]


@pytest.mark.parametrize("bad,needle", [
    ("model.transformer.num_querys=5", "unknown config key 'model.transformer.num_querys'"),
    ("model.transformer.num_queries=abc", "expects int"),
    ("train.lr=fast", "expects float"),
    ("model.backbone.dilation=maybe", "expects a bool"),
    ("nonsense", "key.sub=value"),
    ("model.transformer=3", "is a section"),
    ("model.loss.class_loss=vfl", "unknown class loss 'vfl'"),
    ("model.loss.class_loss.beta=2", "'model.loss.class_loss' is focal, which has no 'beta'; 'quality_focal' has it"),
    ("model.denoising.box_noise=0.4", "'model.denoising' is off; turn it on first with model.denoising=<kind>"),
    ("model.backbone=none", "cannot be off"),
    ("model.loss.class_loss={bad json", "could not parse"),
])
def test_bad_overrides_give_one_line_errors(bad, needle):
    cfg = Config()
    with pytest.raises(ConfigError) as err:
        apply_override(cfg, bad)
    msg = str(err.value)
    assert needle in msg and "\n" not in msg


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match="num_queries"):
        apply_override(Config(), "model.transformer.queries=3")


def test_a_component_slot_switches_kind_takes_fields_and_turns_off():
    cfg = Config()
    apply_override(cfg, "model.loss.class_loss=varifocal")  # the new kind with its own defaults
    assert cfg.model.loss.class_loss == VarifocalLossConfig()
    apply_override(cfg, "model.loss.class_loss.gamma=1.5")  # a field of the kind it holds
    assert cfg.model.loss.class_loss == VarifocalLossConfig(gamma=1.5)
    apply_override(cfg, 'model.loss.class_loss={"kind": "quality_focal", "beta": 3}')  # a kind and its fields
    assert cfg.model.loss.class_loss == QualityFocalLossConfig(beta=3.0)
    apply_overrides(cfg, {"model.loss.class_loss": {"beta": 1.0}})  # a mapping without kind edits the one held
    assert cfg.model.loss.class_loss == QualityFocalLossConfig(beta=1.0)
    apply_overrides(cfg, ["model.denoising=dino", "model.denoising.box_noise=0.4", "model.memory_fusion=dense"])
    assert cfg.model.denoising.kind == "dino" and cfg.model.denoising.box_noise == 0.4
    apply_overrides(cfg, ["model.denoising=none", "model.memory_fusion=null"])
    assert cfg.model.denoising is None and cfg.model.memory_fusion is None
    assert "model.loss.class_loss.beta" in valid_keys(cfg) and "model.denoising" in valid_keys(cfg)


def test_json_roundtrip_names_every_kind_and_unknown_keys_fail():
    for name in presets.names():
        cfg = presets.get(name)
        d = json.loads(cfg.to_json())
        assert Config.from_dict(d) == cfg
        assert d["model"]["arch"]["kind"] == cfg.model.arch.kind and d["model"]["backbone"]["kind"]
    d = presets.get("detr-r50").to_dict()
    d["model"]["bogus"] = 1
    with pytest.raises(ConfigError, match="model.bogus"):
        Config.from_dict(d)
    d = presets.get("detr-r50").to_dict()
    d["model"]["loss"]["class_loss"]["beta"] = 2.0  # a field the focal loss does not have
    with pytest.raises(ConfigError, match="model.loss.class_loss.beta"):
        Config.from_dict(d)
    assert "model.transformer.num_queries" in valid_keys(Config)


def test_no_sentinel_values():
    """No number stands for "none" or "same as": an optional value is None (`-1` or `""` nowhere)."""
    for name in presets.names():
        for path, _, f, value in walk(presets.get(name)):
            assert value != -1 and value != -1.0 and value != "", f"{name}: {path}={value!r}"


def test_every_field_of_every_config_has_a_comment():
    """The comments in the code are the documentation `matchdetr models --show` prints."""
    classes = {Config, type(Config().data), type(Config().train), model_config.ModelConfig, model_config.TransformerConfig,
               model_config.MatcherConfig, model_config.LossConfig, model_config.PostprocessConfig}
    classes |= {cls for table in vars(model_config).values() if isinstance(table, Kinds) for cls in table.classes.values()}
    undocumented = [f"{cls.__name__}.{f.name}" for cls in classes for f in dataclasses.fields(cls)
                    if f.name not in field_docs(cls) and f.name != "preset"
                    and not dataclasses.is_dataclass(f.type if not isinstance(f.type, str) else None)
                    and f.name not in ("transformer", "matcher", "loss", "postprocess", "model", "data", "train")]
    assert not undocumented, undocumented


def test_field_docs_read_trailing_and_preceding_comments():
    docs = field_docs(FocalLossConfig)
    assert docs["gamma"].startswith("focusing exponent")
    assert "the step where lr becomes" in field_docs(type(Config().train))["lr_drop"]


def test_every_preset_passes_its_checks():
    for name in presets.names():
        check_config(presets.get(name))


def test_unknown_preset():
    with pytest.raises(ConfigError, match="available"):
        presets.get("no-such-model")


def test_models_show_lists_every_key_of_every_preset_with_its_meaning(capsys):
    from matchdetr.cli import main
    from matchdetr.config.describe import describe

    for name in presets.names():
        cfg = presets.get(name)
        rows = describe(cfg)
        assert [r.key for r in rows] == valid_keys(cfg), name  # every key --set takes, nothing else
        assert all(r.meaning for r in rows), [r.key for r in rows if not r.meaning]
        for row in rows:
            if row.key in ("model.arch", "model.backbone", "model.loss.class_loss", "model.denoising"):
                assert row.value in row.kinds and len(row.kinds) > 1, (name, row)
    assert main(["models", "--show", "stable-dino-tiny"]) == 0
    lines = capsys.readouterr().out.splitlines()
    line = next(l for l in lines if l.startswith("model.transformer.hidden_dim = 128 "))
    assert "(default 256)" in line and "the width of every token and query" in line and "(>= 1)" in line
    line = next(l for l in lines if l.startswith("model.loss.class_loss = position_supervised "))
    assert "(default focal)" in line and "kinds: focal, position_supervised, varifocal" in line
    assert len(lines) == 1 + len(valid_keys(presets.get("stable-dino-tiny")))
    assert main(["models", "--show", "stable-dino-tny"]) == 2  # a wrong name: one line, did you mean
    assert "did you mean 'stable-dino-tiny'" in capsys.readouterr().err
