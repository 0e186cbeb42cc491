"""Checkpoints and configs written before the per-component config schema (flat sections: ``model.loss.psl_*``,
``-1.0`` for "none", ...) still load: every preset's config as main saved it at e8967b5
(tests/fixtures/flat_configs.json) reads back as today's preset, and a checkpoint saved then
(tests/fixtures/flat_stable_dino_micro.safetensors, a micro Stable-DINO on a quarter-width ResNet-18) loads and
gives the outputs it gave then."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import matchdetr
from matchdetr import presets
from matchdetr.config import Config

FIXTURES = Path(__file__).parents[1] / "fixtures"
FLAT = json.loads((FIXTURES / "flat_configs.json").read_text())


@pytest.mark.parametrize("name", sorted(FLAT))
def test_a_flat_config_reads_as_todays_preset(name: str) -> None:
    assert Config.from_dict(FLAT[name]).to_dict() == presets.get(name).to_dict()


def test_a_flat_checkpoint_loads_and_gives_its_outputs() -> None:
    model = matchdetr.load(FIXTURES / "flat_stable_dino_micro.safetensors")
    want = torch.load(FIXTURES / "flat_stable_dino_micro_outputs.pt")
    images = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(images)
    assert torch.equal(out.logits, want["logits"]) and torch.equal(out.boxes, want["boxes"])
