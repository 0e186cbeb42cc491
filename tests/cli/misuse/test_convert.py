"""`convert` misused: a malformed or incomplete Hugging Face config.json, a release given with another --family."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from .corpus import assert_one_line_error, run_cli

# The releases' layouts, written by the interop tests' inverses of the converter's name rules.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "interop"))
from test_convert_maskdino import TINY_SETS, _tiny, to_release  # noqa: E402
from test_convert_official import resnet_sets, tiny, to_detrex, to_sam_detr  # noqa: E402


# --------------------------------------------------------------------------------------------- convert hf
def _hf_dir(root: Path, config: object) -> Path:
    root.mkdir()
    (root / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    save_file({"model.query_position_embeddings.weight": torch.zeros(3, 8)}, root / "model.safetensors")
    return root


@pytest.mark.parametrize("config,needles", [
    ({"model_type": "deformable_detr", "d_model": "wide"}, ["'d_model'", "integer"]),
    ({"model_type": "deformable_detr", "encoder_layers": 0}, ["'encoder_layers'", "integer >= 1"]),
    ({"model_type": "deformable_detr", "id2label": ["cat"]}, ["'id2label'", "object"]),
    ([], ["config.json", "JSON object"]),
    ("{not json", ["config.json", "invalid JSON"]),
], ids=["wrong-type", "zero", "id2label-list", "not-an-object", "invalid"])
def test_convert_hf_with_a_malformed_config_is_one_line(tmp_path, capsys, config, needles):
    src = _hf_dir(tmp_path / "hf", config)
    o = run_cli(["convert", "hf", src, tmp_path / "out.safetensors"], capsys)
    assert_one_line_error(o, *needles)
    assert not (tmp_path / "out.safetensors").exists()


def test_convert_hf_with_a_config_lacking_keys_reads_them_as_hf_does(tmp_path, capsys):
    # transformers fills a key config.json lacks with DeformableDetrConfig's default (d_model 256, 6 layers, ...):
    # so do we; these weights then do not fit that architecture, which is one line naming the keys
    src = _hf_dir(tmp_path / "hf", {"model_type": "deformable_detr", "use_timm_backbone": True})
    o = run_cli(["convert", "hf", src, tmp_path / "out.safetensors"], capsys)
    assert_one_line_error(o, "hf", "keys")


# --------------------------------------------------------------------------------------- convert official
# Each family's tiny preset as --preset (with the backbone the tiny releases below have), as for a release.
_PRESETS = {"dino": ["--preset", "dino-tiny", *resnet_sets("dino-tiny")],
            "stable-dino": ["--preset", "stable-dino-tiny", *resnet_sets("stable-dino-tiny")],
            "sam-detr": ["--preset", "sam-detr-smca-tiny", *resnet_sets("sam-detr-smca-tiny")],
            "maskdino": ["--preset", "maskdino-tiny", *TINY_SETS]}


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> dict[str, Path]:
    """A tiny checkpoint of each family in its release's layout."""
    root = tmp_path_factory.mktemp("releases")
    states = {"dino": to_detrex(tiny("dino-tiny", 3).state_dict()),
              "stable-dino": to_detrex(tiny("stable-dino-tiny", 3).state_dict()),
              "sam-detr": to_sam_detr(tiny("sam-detr-smca-tiny", 3).state_dict()),
              "maskdino": to_release(_tiny().state_dict())}
    for name, state in states.items():
        torch.save({"model": state}, root / f"{name}.pth")
    return {name: root / f"{name}.pth" for name in states}


@pytest.mark.parametrize("given", list(_PRESETS))
@pytest.mark.parametrize("release", list(_PRESETS))
def test_convert_official_names_the_family_of_a_release_given_as_another(releases, tmp_path, capsys, release, given):
    out = tmp_path / "out.safetensors"
    o = run_cli(["convert", "official", "--family", given, *_PRESETS[given], releases[release], out], capsys)
    if release == given:  # the layout the converter reads
        assert o.code == 0, o.err
        return
    line = assert_one_line_error(o, f"{release}.pth", f"use --family {release}")
    assert f"use --family {given}" not in line and not out.exists()
