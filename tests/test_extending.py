"""docs/extending.md followed literally: a toy classification loss and a toy backbone, each a component with its
config, enter the config through their table (registered at run time here, which is what the one table line
does in the package) and train, with no other file touched."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import matchdetr
from matchdetr.compose.criterion import build_criterion
from matchdetr.compose.model_config import BACKBONES, CLASS_LOSSES
from matchdetr.config import ConfigError
from matchdetr.fields import Component, knob
from matchdetr.losses.focal import one_hot_targets
from matchdetr.models.masks import downsample_mask
from matchdetr.structures import Prediction, Target

GUIDE = Path(__file__).parents[1] / "docs" / "extending.md"


# ------------------------------------------------------------------------------- the guide's code, as written
class L1ClassLoss:
    """|sigmoid(logit) - target| summed over every (query, class) entry, over the GT count."""

    name = "class"  # the loss term it fills: loss_class, loss_class_aux0, ...

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def __call__(self, pred: Prediction, targets: list[Target], indices: list[tuple[Tensor, Tensor]],
                 num_boxes: float) -> Tensor:
        onehot = one_hot_targets(pred.logits, targets, indices)
        return self.scale * (pred.logits.float().sigmoid() - onehot).abs().sum() / num_boxes


@dataclass
class L1ClassLossConfig(Component):
    """An L1 classification loss (a toy)."""

    kind = "l1"
    scale: float = knob(1.0, gt=0)  # multiplies the loss

    def build(self) -> L1ClassLoss:
        return L1ClassLoss(self.scale)


class TinyCNN(nn.Module):
    def __init__(self, width: int, return_levels: tuple[int, ...]) -> None:
        super().__init__()
        self.levels = tuple(sorted(return_levels))
        self.stages = nn.ModuleList(nn.Sequential(nn.Conv2d(3 if i == 0 else width, width, 3, 2, 1), nn.ReLU())
                                    for i in range(max(self.levels)))  # stage i halves the size: stride 2^(i+1)
        self.channels = [width] * len(self.levels)

    def forward(self, images: Tensor, pixel_mask: Tensor) -> list[tuple[Tensor, Tensor]]:
        out, x = [], images
        for i, stage in enumerate(self.stages, start=1):
            x = stage(x)
            if i in self.levels:
                out.append((x, downsample_mask(pixel_mask, x.shape[-2:])))
        return out


@dataclass
class TinyCNNConfig(Component):
    """A plain strided CNN (a toy)."""

    kind = "tiny_cnn"
    width: int = knob(32, ge=1)  # channels of every stage
    return_levels: list[int] = knob(factory=lambda: [4], ge=1, le=6, min_items=1)  # stride exponents returned
    weights: str | None = None  # no weight files for this one

    def build(self) -> TinyCNN:
        return TinyCNN(self.width, tuple(self.return_levels))


# ------------------------------------------------------------------------------------------------ the tests
@pytest.fixture()
def registered(monkeypatch):
    """The one table line each, for this test only."""
    monkeypatch.setitem(CLASS_LOSSES.classes, "l1", L1ClassLossConfig)
    monkeypatch.setitem(BACKBONES.classes, "tiny_cnn", TinyCNNConfig)


def test_the_guide_shows_this_code() -> None:
    """The snippets here are the guide's, line for line (so the guide cannot drift from what works)."""
    guide = GUIDE.read_text()
    source = Path(__file__).read_text()
    for block in re.findall(r"```python\n(.*?)```", guide, re.S):
        body = [l for l in block.splitlines() if l.strip() and not l.startswith(("from ", "import "))]
        assert all(line in source for line in body), [line for line in body if line not in source]


def test_a_new_loss_and_backbone_train_through_the_config(registered, synth_dir, tmp_path) -> None:
    model = matchdetr.build("detr-tiny", **{"loss.class_loss": "l1", "loss.class_loss.scale": 2.0,
                                             "backbone": "tiny_cnn", "backbone.return_levels": [3, 4],
                                             "transformer.hidden_dim": 32, "transformer.num_heads": 4,
                                             "transformer.num_queries": 10})
    assert isinstance(model.module.backbone, TinyCNN)
    assert isinstance(build_criterion(model.config.model).class_loss, L1ClassLoss)
    saved = model.config.to_dict()
    assert saved["model"]["loss"]["class_loss"] == {"kind": "l1", "scale": 2.0}
    result = model.fit(data=synth_dir, out=tmp_path / "run", iters=2, batch_size=2, val=False, progress=False,
                       **{"data.num_workers": 0, "data.train_scales": [96], "data.train_max_size": 128})
    assert result.iterations == 2
    assert matchdetr.load(tmp_path / "run").config.model.backbone == TinyCNNConfig(return_levels=[3, 4])
    with pytest.raises(ConfigError, match="'model.loss.class_loss.scale' must be > 0"):
        matchdetr.build("detr-tiny", **{"loss.class_loss": "l1", "loss.class_loss.scale": -1.0}).fit(
            data=synth_dir, out=tmp_path / "bad", iters=1)


def test_registering_twice_under_one_name_is_refused(registered) -> None:
    @dataclass
    class Other(Component):
        kind = "l1"

    with pytest.raises(TypeError, match="a class loss named 'l1' exists already"):
        CLASS_LOSSES.register(Other)
