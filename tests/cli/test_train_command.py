"""How `matchdetr train` builds its config: a preset, a config file (a run's config.json, or a YAML of some keys
on top of its preset), --init or a run to resume; then --iters/--epochs by the config's own rule (the
learning-rate drop keeps its place in the schedule), then every --set. Never by reading override strings."""

from __future__ import annotations

import json
import warnings

import pytest
from conftest import MICRO

from matchdetr import presets
from matchdetr.cli import build_parser, main
from matchdetr.cli.train import _train_config
from matchdetr.config.checks import schedule_warnings


def config_of(*argv: str):
    return _train_config(build_parser().parse_args(["train", "--out", "unused", *argv]))


def test_iters_moves_the_drop_and_an_explicit_drop_factor_is_kept() -> None:
    cfg = config_of("--model", "dino-tiny", "--iters", "100", "--set", "train.lr_drop_factor=0.5")
    assert (cfg.train.iters, cfg.train.lr_drop, cfg.train.lr_drop_factor) == (100, 80, 0.5)  # 480 of 600 -> 80 of 100
    cfg = config_of("--model", "dino-tiny", "--iters", "100", "--set", "train.lr_drop=30")
    assert cfg.train.lr_drop == 30  # an explicit --set wins
    cfg = config_of("--model", "dino-4scale-r50", "--epochs", "24")
    assert (cfg.train.iters, cfg.train.epochs, cfg.train.lr_drop) == (None, 24, 22)  # 11 of 12 -> 22 of 24


def test_a_drop_outside_the_run_is_a_warning_naming_the_key() -> None:
    cfg = config_of("--model", "dino-tiny", "--set", "train.iters=100")  # --set changes the length only
    assert cfg.train.lr_drop == 480
    with pytest.warns(UserWarning, match="train.lr_drop=480 is at or after the end of the run"):
        schedule_warnings(cfg.train, 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        schedule_warnings(config_of("--model", "dino-tiny", "--iters", "100").train, 100)


def test_a_config_file_is_a_base_and_set_wins(tmp_path) -> None:
    saved = presets.get("stable-dino-tiny")
    saved.train.lr = 3e-4
    (tmp_path / "config.json").write_text(saved.to_json())
    assert config_of("--config", str(tmp_path / "config.json")) == saved
    yaml = tmp_path / "mine.yaml"
    yaml.write_text("preset: dino-tiny\nmodel:\n  loss:\n    class_loss: {kind: varifocal, gamma: 1.5}\n"
                    "train: {lr: 2.0e-4}\n")
    cfg = config_of("--config", str(yaml), "--set", "train.lr=1e-4")
    assert cfg.preset == "dino-tiny" and cfg.model.loss.class_loss.kind == "varifocal"
    assert cfg.model.loss.class_loss.gamma == 1.5 and cfg.train.lr == 1e-4
    assert cfg.model.transformer == presets.get("dino-tiny").model.transformer  # the rest from the preset


@pytest.mark.parametrize("text,needle", [
    ("model: {loss: {class_loss: vfl}}", "unknown class loss 'vfl'"),
    ("model: {bogus: 1}", "unknown config key 'model.bogus'"),
    ("[1, 2]", "holds a mapping of sections"),
    ("model: {loss: [", "not readable YAML"),
])
def test_a_bad_config_file_is_one_line_naming_it(tmp_path, capsys, text, needle) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert needle in err and "bad.yaml" in err and err.count("\n") == 1


def test_resume_alone_continues_the_run_and_a_changed_option_is_named(synth_dir, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    sets = [x for s in MICRO + ["data.num_workers=0", "train.checkpoint_every=1"] for x in ("--set", s)]
    assert main(["train", "--model", "detr-tiny", "--data", str(synth_dir), "--out", str(run), "--iters", "1",
                 "--batch-size", "2", "--no-val", "--no-progress", *sets]) == 0
    assert main(["train", "--out", str(run), "--resume", "--iters", "2", "--no-val", "--no-progress"]) == 0
    assert "resumed from" in capsys.readouterr().out
    with pytest.warns(UserWarning, match=r"train.batch_size \(run: 2, given: 4\)"):
        assert main(["train", "--out", str(run), "--resume", "--iters", "3", "--batch-size", "4", "--no-val",
                     "--no-progress"]) == 0


def test_train_needs_a_source_of_config(tmp_path, capsys) -> None:
    assert main(["train", "--out", str(tmp_path / "nothing")]) == 2
    assert "train needs --model PRESET, --config FILE" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "nothing"), "--resume"]) == 2
    assert "no run to continue here" in capsys.readouterr().err
