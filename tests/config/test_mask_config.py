"""The mask costs and loss behind config keys: off by default (every preset's matcher and criterion unchanged),
built with their settings when asked for, range-checked."""

from __future__ import annotations

import pytest
import torch

from matchdetr import presets
from matchdetr.compose import build_criterion, build_matcher
from matchdetr.config import Config, ConfigError, apply_overrides
from matchdetr.config.checks import check_model
from matchdetr.losses.masks import MaskLoss
from matchdetr.matching.costs import FocalClassCost, GIoUCost, L1BoxCost
from matchdetr.matching.mask_costs import DiceCost, MaskBCECost
from matchdetr.structures import DetectorOutput, Prediction, Target

MASK_DINO = {"model.matcher.mask_cost": {"kind": "point_sampled", "mask_weight": 5.0, "dice_weight": 5.0, "points": 48},
             "model.loss.mask": {"kind": "point_sampled", "mask_weight": 5.0, "dice_weight": 5.0, "points": 40,
                                 "oversample_ratio": 2.0, "importance_ratio": 0.5}}


BOX_PRESETS = [n for n in presets.names() if presets.get(n).model.arch.kind != "mask_dino"]
MASK_PRESETS = [n for n in presets.names() if n not in BOX_PRESETS]


@pytest.mark.parametrize("name", MASK_PRESETS)
def test_mask_presets_build_the_mask_terms(name):
    crit = build_criterion(presets.get(name).model)
    assert isinstance(crit.mask_loss, MaskLoss) and crit.weights["mask"] == crit.weights["dice"] == 5.0
    assert [type(c) for _, c in crit.matcher.costs][3:] == [MaskBCECost, DiceCost]


@pytest.mark.parametrize("name", BOX_PRESETS)
def test_presets_build_no_mask_cost_or_loss(name):
    cfg = presets.get(name)
    assert cfg.model.matcher.mask_cost is None and cfg.model.loss.mask is None
    crit = build_criterion(cfg.model)
    assert crit.mask_loss is None and set(crit.weights) == {"class", "bbox", "giou"}
    assert [type(c) for _, c in crit.matcher.costs][1:] == [L1BoxCost, GIoUCost]


def test_mask_dino_settings_build_the_mask_terms():
    cfg = apply_overrides(Config(), MASK_DINO)
    matcher = build_matcher(cfg.model)
    assert [(w, type(c)) for w, c in matcher.costs] == [(2.0, FocalClassCost), (5.0, L1BoxCost), (2.0, GIoUCost),
                                                        (5.0, MaskBCECost), (5.0, DiceCost)]
    assert matcher.costs[3][1].num_points == matcher.costs[4][1].num_points == 48
    crit = build_criterion(cfg.model)
    assert isinstance(crit.mask_loss, MaskLoss)
    loss = crit.mask_loss
    assert (loss.num_points, loss.oversample_ratio, loss.importance_sample_ratio) == (40, 2.0, 0.5)
    assert crit.weights["mask"] == crit.weights["dice"] == 5.0
    only_dice = build_criterion(apply_overrides(Config(), {"model.loss.mask": {"kind": "point_sampled", "mask_weight": 0.0,
                                                                                "dice_weight": 1.0}}).model)
    assert only_dice.mask_loss is not None and only_dice.weights["mask"] == 0.0


def test_built_criterion_scores_masks_on_every_layer():
    cfg = apply_overrides(Config(), {**MASK_DINO, "model.num_classes": 3})
    g = torch.Generator().manual_seed(0)
    masks = torch.randn(1, 6, 4, 5, generator=g, requires_grad=True)
    logits = torch.randn(1, 6, 3, generator=g, requires_grad=True)
    boxes = torch.rand(1, 6, 4, generator=g) * 0.4 + 0.2
    out = DetectorOutput(logits, boxes, aux=[Prediction(logits * 2, boxes, masks * 2)], masks=masks)
    tgt = Target(torch.rand(2, 4, generator=g) * 0.4 + 0.2, torch.tensor([0, 2]), 0, (16, 18), (16, 18),
                 masks=torch.rand(2, 16, 18, generator=g) > 0.5)
    torch.manual_seed(0)
    res = build_criterion(cfg.model)(out, [tgt])
    for key in ("loss_mask", "loss_dice", "loss_mask_aux0", "loss_dice_aux0"):
        assert torch.isfinite(res.losses[key]) and res.losses[key] > 0
    res.total.backward()
    assert torch.isfinite(masks.grad).all() and masks.grad.abs().sum() > 0


@pytest.mark.parametrize("key,value", [("matcher.mask_cost.points", 0), ("loss.mask.points", 0),
                                       ("loss.mask.oversample_ratio", 0.5), ("loss.mask.importance_ratio", 1.5)])
def test_bad_point_settings_are_refused(key, value):
    cfg = apply_overrides(Config(), {**MASK_DINO, f"model.{key}": value})
    with pytest.raises(ConfigError, match=f"model.{key}"):
        check_model(cfg.model)
