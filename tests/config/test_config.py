import pytest

from matchdetr import presets
from matchdetr.config import Config, ConfigError, apply_override, apply_overrides, valid_keys


def test_typed_overrides():
    cfg = presets.get("detr-tiny")
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


def test_json_roundtrip_and_unknown_keys():
    cfg = presets.get("detr-r50")
    assert Config.from_dict(cfg.to_dict()) == cfg
    d = cfg.to_dict()
    d["model"]["bogus"] = 1
    with pytest.raises(ConfigError, match="model.bogus"):
        Config.from_dict(d)
    assert "model.transformer.num_queries" in valid_keys(Config)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="available"):
        presets.get("no-such-model")
