"""The unstable score (Stable-DINO sec 2.4.3): counting, per-layer scoring on a model, the CLI and the
training log."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import MICRO

from matchdetr import api, presets
from matchdetr.engine.unstable_score import count_changes, layer_predictions, unstable_score
from matchdetr.cli import main
from matchdetr.config import apply_overrides, train_config
from matchdetr.data.coco import CocoDetection, resolve_split
from matchdetr.data.transforms import build_transforms
from matchdetr.engine.train import train
from matchdetr.compose import build_matcher

T = torch.tensor


def test_count_changes_by_hand():
    # image 0: 3 GTs; layer 1 swaps the queries of GT 0 and GT 2; layer 2 changes GT 1 only. image 1: 1 GT, stable.
    l0 = [(T([1, 4, 7]), T([0, 1, 2])), (T([3]), T([0]))]
    l1 = [(T([1, 4, 7]), T([2, 1, 0])), (T([3]), T([0]))]
    l2 = [(T([1, 5, 7]), T([2, 1, 0])), (T([3]), T([0]))]
    assert count_changes([l0, l1, l2]) == [2, 1]
    assert count_changes([l0]) == []


def _micro(name: str):
    cfg = presets.get(name)
    apply_overrides(cfg, MICRO + ["model.transformer.dec_layers=3"])
    return cfg


@pytest.mark.parametrize("name,first", [("stable-dino-tiny", 1), ("deformable-detr-two-stage-tiny", 2)])
def test_unstable_score_per_layer(synth_dir, name, first):
    cfg = _micro(name)
    paths = resolve_split(synth_dir, "val")
    ds = CocoDetection(paths, build_transforms(cfg.data, train=False))
    cfg.model.num_classes = len(ds.label_map)
    torch.manual_seed(0)
    model = api.from_config(cfg, ds.label_map)
    score = unstable_score(model, ds, build_matcher(cfg.model), torch.device("cpu"), num_images=5, batch_size=5)
    assert score.layers == list(range(first, 4)) and score.images == 5 and score.num_gt > 0
    assert all(0 <= s <= 100 for s in score.scores) and model.training  # mode restored
    # the score is the percentage of changed GTs, recomputed here from the matches directly
    model.eval()
    with torch.no_grad():
        batch = [ds[i] for i in range(5)]
        from matchdetr.data.collate import collate

        b = collate(batch)
        preds, start = layer_predictions(model(b.images, b.pixel_mask))
        changed = count_changes([build_matcher(cfg.model)(p, b.targets) for p in preds])
    assert start == first - 1
    assert score.scores == pytest.approx([100 * c / score.num_gt for c in changed])


def test_unstable_score_of_mask_dino_matches_every_layers_masks(synth_dir):
    # Mask-DINO's matcher has mask costs, so every layer's masks are needed, though in eval the head computes
    # only the last layer's (tests/models/test_mask_dino.py); the score's matches equal those of train-mode outputs.
    cfg = _micro("maskdino-tiny")
    ds = CocoDetection(resolve_split(synth_dir, "val"), build_transforms(cfg.data, train=False), masks=True)
    cfg.model.num_classes = len(ds.label_map)
    torch.manual_seed(0)
    model = api.from_config(cfg, ds.label_map)
    matcher = build_matcher(cfg.model)
    from matchdetr.matching.mask_costs import DiceCost, MaskBCECost

    assert any(isinstance(c, (MaskBCECost, DiceCost)) for w, c in matcher.costs if w)

    def seeded(pred, targets):  # the mask costs sample their points from the global generator
        torch.manual_seed(1)
        return matcher(pred, targets)

    score = unstable_score(model, ds, seeded, torch.device("cpu"), num_images=4, batch_size=4)
    assert score.layers == [1, 2, 3] and score.num_gt > 0 and model.training
    from matchdetr.data.collate import collate

    b = collate([ds[i] for i in range(4)])
    model.eval()
    model.head.train()  # every layer's masks; the rest of the model in eval, as in the score
    with torch.no_grad():
        preds, _ = layer_predictions(model(b.images, b.pixel_mask))
    assert all(p.masks is not None for p in preds)
    changed = count_changes([seeded(p, b.targets) for p in preds])
    assert score.scores == pytest.approx([100 * c / score.num_gt for c in changed])


def test_analyze_unstable_cli(synth_dir, tmp_path, capsys):
    cfg = _micro("dino-tiny")
    cfg.model.num_classes = 10
    model = api.from_config(cfg)
    ds = CocoDetection(resolve_split(synth_dir, "val"), build_transforms(cfg.data, train=False))
    model.label_map = ds.label_map
    model.save(tmp_path / "model.safetensors")
    assert main(["analyze", "unstable", "--checkpoint", str(tmp_path / "model.safetensors"), "--data", str(synth_dir),
                 "--images", "4", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "0->1" in text and "2->3" in text
    rows = (tmp_path / "unstable" / "unstable.csv").read_text().splitlines()
    assert rows[0] == "layer,unstable_score,changed,num_gt" and len(rows) == 4
    assert json.loads((tmp_path / "unstable" / "unstable.json").read_text())["images"] == 4


def test_training_logs_the_unstable_score(synth_dir, tmp_path):
    cfg = _micro("stable-dino-tiny")
    cfg.train.iters, cfg.train.batch_size, cfg.train.unstable_every, cfg.train.unstable_images = 4, 2, 2, 3
    cfg.data.num_workers = 0
    train(train_config(cfg, synth_dir), tmp_path, device="cpu", progress=False)
    recs = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    unstable = [r for r in recs if r["type"] == "unstable"]
    assert [r["iter"] for r in unstable] == [2, 4]
    assert set(unstable[0]) == {"type", "iter", "unstable_l1", "unstable_l2", "unstable_l3"}
