"""Shared fixtures: one tiny synthetic dataset per session and a micro model configuration."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# A stop signal a test's in-process training or command took still stops the run (see the module).
from stop_signals_plugin import pytest_configure, pytest_runtest_call  # noqa: F401  (hooks of this conftest)

# Micro sizes on top of a -tiny preset so a training iteration takes a few tens of milliseconds.
MICRO = [
    "model.transformer.hidden_dim=32", "model.transformer.num_heads=4",
    "model.transformer.dim_feedforward=64", "model.transformer.enc_layers=1", "model.transformer.dec_layers=2",
    "model.transformer.num_queries=10", "data.train_scales=[96,112]", "data.train_max_size=160",
    "data.crop_resize_scales=[96]", "data.crop_min=64", "data.crop_max=96", "data.test_size=96",
    "data.test_max_size=160", "train.warmup_iters=2", "train.log_every=2",
]  # (the tiny presets' EfficientNet-Lite0 keeps its ImageNet widths)
# The earlier tiny backbone: a quarter-width ResNet-18 pretrained on the box crops, in brief (with MICRO), at the
# single-scale tiny presets' level (C4).
RESNET_MICRO = [
    "model.backbone=resnet", "model.backbone.depth=18", "model.backbone.width=8", "model.backbone.norm=bn",
    "model.backbone.frozen_stages=0", "model.backbone.return_levels=[4]", "model.backbone.pretrain_epochs=1",
    "model.backbone.pretrain_size=16",
]


# Pretrained backbones are cached per test session, never in the user's ~/.cache (subprocesses inherit this).
os.environ["MATCHDETR_CACHE"] = tempfile.mkdtemp(prefix="matchdetr-cache-")


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from matchdetr.data.synthetic import generate

    out = tmp_path_factory.mktemp("synth")
    generate(out, num_train=24, num_val=8, min_side=96, max_side=160, max_objects=6, seed=0, progress=False)
    return out


@pytest.fixture()
def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def resnet18(preset: str, width: int = 8, frozen_stages: int = 0, norm: str = "bn") -> list[str]:
    """Overrides that put a narrow, randomly initialised ResNet-18 in place of a preset's backbone, at the preset's
    levels (switching the backbone's kind starts from the new kind's defaults, so the levels are given)."""
    from matchdetr import presets

    levels = presets.get(preset).model.backbone.return_levels
    return ["model.backbone=resnet", "model.backbone.depth=18", f"model.backbone.width={width}",
            f"model.backbone.norm={norm}", f"model.backbone.frozen_stages={frozen_stages}",
            f"model.backbone.return_levels={levels}"]
