"""Backbone pretraining on the training boxes (the stand-in for ImageNet weights): crops, training, cache, and
the trainer starting from it."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import MICRO, RESNET_MICRO
from PIL import Image
from safetensors.torch import load_file

from matchdetr.models.backbone import ResNetConfig
from matchdetr.data.coco import CocoDetection, resolve_split
from matchdetr.engine import backbone_pretrain as bp
from matchdetr.models.backbone import Backbone


def _dataset(synth_dir) -> CocoDetection:
    return CocoDetection(resolve_split(synth_dir, "train"), lambda *a: a, None)


def test_crop_is_the_box_with_context_resized() -> None:
    image = Image.new("RGB", (100, 80), (0, 0, 0))
    image.paste((255, 0, 0), (40, 30, 60, 50))  # a red 20x20 square at x 40..60, y 30..50
    crops, _, labels, _ = bp.BoxCrops(32)(image, torch.tensor([[40.0, 30.0, 60.0, 50.0]]), torch.tensor([3]), None)
    assert crops.shape == (1, 3, 32, 32) and crops.dtype == torch.uint8 and labels.tolist() == [3]
    # side = 1.3 * 20 + 4 = 30 px around the centre: the square fills the middle 2/3, context on every side
    red = crops[0, 0] > 128
    assert red[16, 16] and not red[1, 1] and not red[30, 30] and red.float().mean().item() == pytest.approx((20 / 30) ** 2, abs=0.08)
    # a box at the border is padded with black, never shifted
    crops, *_ = bp.BoxCrops(16)(image, torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([0]), None)
    assert crops[0, :, 0, 0].tolist() == [0, 0, 0]


def test_box_crops_cover_every_training_box(synth_dir) -> None:
    ds = _dataset(synth_dir)
    images, labels = bp.box_crops(ds, 24, workers=0)
    ann = json.loads((synth_dir / "annotations" / "instances_train.json").read_text())
    assert images.shape == (len(ann["annotations"]), 3, 24, 24)
    assert sorted(labels.tolist()) == sorted(ds.label_map.to_label(a["category_id"]) for a in ann["annotations"])


def test_large_sets_use_a_random_subset_of_whole_images(synth_dir) -> None:
    ds = _dataset(synth_dir)
    torch.manual_seed(0)
    images, labels = bp.box_crops(ds, 16, workers=0, max_crops=12)
    assert 1 <= len(labels) <= 12 and images.shape[0] == len(labels)
    torch.manual_seed(0)
    assert torch.equal(bp.box_crops(ds, 16, workers=0, max_crops=12)[1], labels)  # seeded: the same subset


def test_pretraining_writes_a_loadable_torchvision_file_and_is_cached(synth_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MATCHDETR_CACHE", str(tmp_path / "cache"))
    cfg = ResNetConfig(depth=18, width=8, pretrain_epochs=2, pretrain_size=32)
    ds = _dataset(synth_dir)
    before = torch.get_rng_state()
    first = bp.pretrained_backbone_file(cfg, ds, seed=1, workers=0)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's random stream is untouched
    assert not first.cached and first.epochs == 2 and 0 <= first.holdout_accuracy <= 100
    state = load_file(first.path)
    assert state["fc.weight"].shape == (len(ds.label_map), 64) and "layer4.1.bn2.running_var" in state
    assert not torch.equal(state["layer1.0.bn1.running_mean"], torch.zeros(8))  # statistics were learnt
    # Any backbone of that ResNet loads it, frozen or trainable BatchNorm, with or without dilation.
    for norm, dilation in (("bn", True), ("frozen_bn", False)):
        model = Backbone("resnet18", width=8, return_levels=(4, 5), norm=norm, dilation=dilation)
        from matchdetr.interop.torchvision_resnet import load_torchvision_resnet

        load_torchvision_resnet(model, first.path)
        assert torch.equal(model.body.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])
    again = bp.pretrained_backbone_file(cfg, ds, seed=1, workers=0)
    assert again.cached and again.path == first.path and again.holdout_accuracy == first.holdout_accuracy
    assert bp.pretrained_backbone_file(cfg, ds, seed=2, workers=0).path != first.path  # the key has the seed


def test_trainer_starts_from_the_pretrained_backbone(synth_dir, tmp_path, monkeypatch, capsys) -> None:
    from matchdetr.cli import main

    monkeypatch.setenv("MATCHDETR_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    args = ["train", "--model", "detr-tiny", "--data", str(synth_dir), "--out", str(out), "--iters", "1",
            "--batch-size", "2", "--device", "cpu", "--no-progress"]
    sets = MICRO + RESNET_MICRO + ["data.num_workers=0", "model.backbone.pretrain_epochs=1",
                                   "model.backbone.pretrain_size=32", "train.lr=0", "train.lr_backbone=0",
                                   "train.weight_decay=0"]
    assert main(args + [x for o in sets for x in ("--set", o)]) == 0
    printed = capsys.readouterr().out
    assert "backbone pretraining (trained in" in printed
    assert "backbone pretraining: 1 epochs" not in printed and "box crops of 32 px, 1 epochs" in printed  # progress
    (path,) = (tmp_path / "cache" / "backbones").glob("*.safetensors")
    weights = load_file(str(path))
    from matchdetr import load

    model = load(out)
    # lr 0: the detector's conv weights are still the pretrained ones (BatchNorm statistics move in training)
    assert torch.equal(model.backbone.body.layer2[0].conv2.weight, weights["layer2.0.conv2.weight"])
    assert main(args + ["--resume"] + [x for o in sets for x in ("--set", o)]) == 0  # resume does not pretrain again
    assert "backbone pretraining" not in capsys.readouterr().out
    # the EfficientNet-Lite backbones start from ImageNet weights: box-crop pretraining is not one of their keys
    lite = [o for o in sets if not o.startswith("model.backbone")] + ["model.backbone.pretrain_epochs=1"]
    assert main(["train", "--model", "detr-tiny", "--data", str(synth_dir), "--out", str(tmp_path / "lite"),
                 "--iters", "1", "--no-progress"] + [x for o in lite for x in ("--set", o)]) == 2
    assert "has no 'pretrain_epochs'; 'resnet' has it" in capsys.readouterr().err
