"""`convert` misused: a malformed or incomplete Hugging Face config.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from .corpus import assert_one_line_error, run_cli


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
