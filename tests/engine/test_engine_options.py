"""Engine options beyond the defaults: epoch schedules, EMA (and its resume), TensorBoard, lr schedule, groups."""

from __future__ import annotations

import json

import pytest
import torch

from test_train import micro_cfg

from matchdetr.config import train_config
from matchdetr.engine.optim import ModelEMA, lr_factor, param_groups
from matchdetr.engine.train import train


def test_lr_factor_schedule():
    assert lr_factor(0, 10, 0.1, 0) == 1.0
    assert lr_factor(9, 10, 0.1, 0) == 1.0 and lr_factor(10, 10, 0.1, 0) == pytest.approx(0.1)
    assert lr_factor(0, 10, 0.1, 4) == pytest.approx(0.001)
    assert lr_factor(2, 10, 0.1, 4) == pytest.approx(0.001 + 0.999 * 0.5)


def test_param_groups_backbone_lr_and_no_decay_on_norms():
    import matchdetr

    det = matchdetr.build("detr-tiny", num_classes=3)
    groups = param_groups(det, lr=1e-4, lr_backbone=1e-5, weight_decay=1e-4)
    names = {id(p): n for n, p in det.named_parameters()}
    for g in groups:
        for p in g["params"]:
            n = names[id(p)]
            assert g["lr"] == (1e-5 if n.startswith("backbone.") else 1e-4)
            assert g["weight_decay"] == (0.0 if p.ndim <= 1 else 1e-4), n
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in det.parameters() if p.requires_grad)


def test_ema_tracks_weights():
    lin = torch.nn.Linear(2, 2)
    ema = ModelEMA(lin, decay=0.5)
    with torch.no_grad():
        lin.weight.add_(1.0)
    ema.update(lin)
    d = 0.5 * (1 - torch.exp(torch.tensor(-1 / 2000))).item()
    assert torch.allclose(ema.module.weight, d * (lin.weight - 1) + (1 - d) * lin.weight)


def test_epochs_schedule_ema_tensorboard_and_ema_resume(synth_dir, tmp_path):
    pytest.importorskip("tensorboard")
    cfg = micro_cfg(iters=None, epochs=2, batch_size=8, ema_decay=0.9, tensorboard=True, checkpoint_every=3, lr_drop=1)
    cfg.data.num_workers = 0
    res = train(train_config(cfg, synth_dir), tmp_path / "a", val=False, device="cpu", progress=False)
    assert res.iterations == 2 * (24 // 8)  # 24 training images, drop_last batches of 8
    assert any((tmp_path / "a" / "tensorboard").iterdir())
    lines = [json.loads(l) for l in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["lr"] == pytest.approx(cfg.train.lr * 0.1)  # epoch-based drop after epoch 1
    # resume from iteration 3 (mid-run) reproduces the EMA weights of the uninterrupted run
    import shutil

    from matchdetr.engine import checkpoint as ck

    shutil.copytree(tmp_path / "a", tmp_path / "b")
    for it, w, s in ck.checkpoint_paths(tmp_path / "b"):
        if it > 3:
            w.unlink(), s.unlink()
    (tmp_path / "b" / "model.safetensors").unlink()
    train(train_config(cfg, synth_dir), tmp_path / "b", val=False, device="cpu", resume=True, progress=False)
    from safetensors.torch import load_file

    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
