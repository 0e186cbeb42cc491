"""Fine-tuning: a 91-class checkpoint starts a 10-class run; class heads (and DN label embedding) re-initialised."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import MICRO

from matchdetr import api, presets
from matchdetr.config import apply_overrides, train_config
from matchdetr.data.coco import resolve_split
from matchdetr.engine.checkpoint import CheckpointError
from matchdetr.engine.train import Trainer
from matchdetr.engine.finetune import class_dependent_keys


def _micro(name: str, num_classes: int):
    cfg = presets.get(name)
    apply_overrides(cfg, MICRO)
    cfg.model.num_classes = num_classes
    return cfg


@pytest.fixture(scope="module")
def coco91(tmp_path_factory):
    """A 91-class dino-tiny (micro) checkpoint with random weights."""
    torch.manual_seed(0)
    det = api.from_config(_micro("dino-tiny", 91))
    with torch.no_grad():
        for p in det.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("ck") / "coco91.safetensors"
    det.save(str(path))
    return path, det.state_dict()


def test_class_dependent_keys() -> None:
    assert class_dependent_keys(_micro("detr-tiny", 91).model) == {"head.class_embed.0.weight", "head.class_embed.0.bias"}
    keys = class_dependent_keys(_micro("dino-tiny", 91).model)
    assert "queries.label_enc.weight" in keys and all("class_embed" in k or "label_enc" in k for k in keys)


def test_finetune_91_to_10_classes_trains(synth_dir, tmp_path, coco91, capsys) -> None:
    path, ref = coco91
    cfg = _micro("dino-tiny", 91)
    cfg.train.init, cfg.train.iters, cfg.train.batch_size, cfg.train.log_every = str(path), 3, 2, 1
    cfg.data.num_workers = 0
    trainer = Trainer(train_config(cfg, synth_dir), tmp_path, val=False, device="cpu", progress=False)
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("initialised from")][-1]
    assert "class set differs (91 -> 10 classes)" in line and "head.class_embed" in line and "queries.label_enc" in line
    state = trainer.model.state_dict()
    reinit = class_dependent_keys(cfg.model)
    for k, v in state.items():
        if k in reinit:
            assert v.shape != ref[k].shape  # 10-class tensors, freshly initialised
        else:
            assert torch.equal(v, ref[k]), k  # everything else is the checkpoint's, at step 0
    prior = -math.log((1 - 0.01) / 0.01)
    assert torch.allclose(state["head.class_embed.0.bias"], torch.full((10,), prior))
    trainer.run()
    records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["type"] == "train"]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    # results.csv: one row per metrics.jsonl line, written while training
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert rows[0].startswith("type,iter,epoch,lr,loss") and len(rows) == 1 + len(records)


def test_cli_train_init_without_model(synth_dir, tmp_path, coco91, capsys) -> None:
    from matchdetr.cli import main

    path, _ = coco91
    rc = main(["train", "--init", str(path), "--data", str(synth_dir), "--out", str(tmp_path), "--iters", "1",
               "--batch-size", "2", "--no-val", "--no-progress", "--set", "data.num_workers=0"])
    assert rc == 0
    assert "re-initialised" in capsys.readouterr().out
    assert json.loads((tmp_path / "config.json").read_text())["train"]["init"] == str(path)
    assert main(["train", "--data", str(synth_dir), "--out", str(tmp_path)]) == 2  # neither --model nor --init


def test_same_classes_loads_everything_and_wrong_arch_fails(coco91, tmp_path) -> None:
    path, ref = coco91
    det = api.load(path)
    assert "all" in det.load_weights(path)
    other = api.from_config(_micro("deformable-detr-tiny", 10))
    with pytest.raises(CheckpointError, match="does not fit preset 'deformable-detr-tiny'"):
        other.load_weights(path)


def test_train_help_mentions_init(capsys) -> None:
    from matchdetr.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--init" in capsys.readouterr().out
