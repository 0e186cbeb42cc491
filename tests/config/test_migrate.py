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


# Intended changes of presets since the flat configs were saved, each a value a migrated checkpoint keeps as it
# was trained: the Mask-DINO presets follow the release (positions without offset, the padded batch read whole,
# clipping at 0.01, every weight trained, no 0.1x sampling offsets).
CHANGED = {
    "mask_dino": {("model", "arch", "pos_offset"): (-0.5, 0.0), ("model", "arch", "size_divisibility"): (1, 32),
                  ("model", "arch", "padding_is_content"): (False, True), ("train", "clip_max_norm"): (0.1, 0.01),
                  ("train", "lr_proj_names"): (["sampling_offsets", "reference_points"], [])},
    "maskdino-r50": {("model", "backbone", "frozen_stages"): (1, 0)},
}


def _changes(name: str, cfg: dict) -> dict:
    changes = dict(CHANGED["mask_dino"]) if cfg["model"]["arch"]["kind"] == "mask_dino" else {}
    return {**changes, **CHANGED.get(name.removeprefix("stable-"), {})}


@pytest.mark.parametrize("name", sorted(FLAT))
def test_a_flat_config_reads_as_todays_preset(name: str) -> None:
    migrated, today = Config.from_dict(FLAT[name]).to_dict(), presets.get(name).to_dict()
    for path, (old, new) in _changes(name, migrated).items():
        node_old, node_new = migrated, today
        for key in path[:-1]:
            node_old, node_new = node_old[key], node_new[key]
        assert (node_old[path[-1]], node_new[path[-1]]) == (old, new), path
        node_old[path[-1]] = new
    assert migrated == today


def test_a_flat_checkpoint_loads_and_gives_its_outputs() -> None:
    model = matchdetr.load(FIXTURES / "flat_stable_dino_micro.safetensors")
    want = torch.load(FIXTURES / "flat_stable_dino_micro_outputs.pt")
    images = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(images)
    assert torch.equal(out.logits, want["logits"]) and torch.equal(out.boxes, want["boxes"])
