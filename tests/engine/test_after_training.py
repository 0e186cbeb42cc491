"""What a YOLO or RF-DETR user looks for after training: early stopping on val AP with patience (resumable), the
best weights beside the last, the validation loss in the log, prediction images of the val split, and a first
line before anything slow."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import MICRO, resnet18
from safetensors.torch import load_file

import matchdetr
from matchdetr import api, presets
from matchdetr.config import apply_overrides, train_config
from matchdetr.data.common import DatasetError
from matchdetr.engine import checkpoint as ck
from matchdetr.engine.best import BestTracker
from matchdetr.engine.train import train


def micro_cfg(synth_dir, **train_opts):
    cfg = presets.get("detr-tiny")
    # a narrow random ResNet-18 in place of EfficientNet-Lite0: these tests train and evaluate several times
    apply_overrides(cfg, MICRO + resnet18("detr-tiny") + ["data.num_workers=0", "model.transformer.dropout=0.1"])
    for k, v in {"iters": 8, "batch_size": 2, "eval_every": 2, "checkpoint_every": 100, "lr_drop": None,
                 **train_opts}.items():
        setattr(cfg.train, k, v)
    return train_config(cfg, synth_dir)


def _evals(run):
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["type"] == "eval"]


def test_the_tracker_counts_evaluations_without_improvement() -> None:
    t = BestTracker(patience=2, min_delta=0.5)
    assert t.update(float("nan"), 1) is False and t.since == 1  # an undefined AP is no improvement
    assert t.update(3.0, 2) and (t.best, t.best_iter, t.since) == (3.0, 2, 0)
    assert not t.update(3.4, 3) and not t.exhausted  # within min_delta
    assert not t.update(1.0, 4) and t.exhausted
    again = BestTracker(patience=5)
    again.load_state_dict(t.state_dict())
    assert (again.best, again.since, again.exhausted) == (3.0, 2, False)  # the patience is the config's


def test_early_stop_keeps_the_best_and_the_run_resumes_to_the_uninterrupted_weights(synth_dir, tmp_path, capsys):
    # min_delta 100 AP points: only the first evaluation (iteration 2) improves, so patience 1 stops at 4
    ref = train(micro_cfg(synth_dir, iters=6, early_stop_min_delta=100.0), tmp_path / "ref", device="cpu",
                progress=False)
    stopped = train(micro_cfg(synth_dir, iters=6, early_stop_min_delta=100.0, early_stop_patience=1), tmp_path / "run",
                    device="cpu", progress=False)
    out = capsys.readouterr().out
    assert stopped.early_stopped and stopped.iterations == 4 and not ref.early_stopped and ref.iterations == 6
    assert "early stop at iteration 4/6: val AP has not improved for 1 evaluations" in out
    run = tmp_path / "run"
    best_iter = ck.read_meta(run / "best.safetensors")["iteration"]
    assert best_iter == 2 == ck.read_meta(ref.run_dir / "best.safetensors")["iteration"]
    assert ck.read_meta(run / "model.safetensors")["iteration"] == 4  # the last weights, as documented
    assert [i for i, _, _ in ck.checkpoint_paths(run)] == [4]  # saved where it stopped: resumable
    assert json.loads((run / "eval" / "metrics.json").read_text()) == json.loads(
        (run / "eval" / "iter_0000004" / "metrics.json").read_text())  # the final evaluation is the stopping one
    assert [r["iter"] for r in _evals(run)] == [2, 4]
    assert matchdetr.load(run, best=True).module.state_dict().keys() == matchdetr.load(run).module.state_dict().keys()
    with pytest.raises(ck.CheckpointError, match="best=True takes a run directory"):
        matchdetr.load(run / "model.safetensors", best=True)
    best = load_file(str(run / "best.safetensors"))
    assert all(torch.equal(best[k], v) for k, v in matchdetr.load(run, best=True).module.state_dict().items())

    # resumed with the same patience: nothing to continue; with none: on to the uninterrupted run's weights
    again = train(micro_cfg(synth_dir, iters=6, early_stop_min_delta=100.0, early_stop_patience=1), run, device="cpu",
                  resume=True, progress=False)
    assert again.early_stopped and again.iterations == 4 and "early stop at iteration 4/6" in capsys.readouterr().out
    assert [r["iter"] for r in _evals(run)] == [2, 4]  # the same weights are not counted twice
    resumed = train(micro_cfg(synth_dir, iters=6, early_stop_min_delta=100.0), run, device="cpu", resume=True,
                    progress=False)
    assert resumed.iterations == 6 and not resumed.early_stopped
    a, b = load_file(str(ref.run_dir / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["iter"] for r in _evals(run)] == [r["iter"] for r in _evals(ref.run_dir)] == [2, 4, 6]


def test_evaluations_log_the_validation_loss_and_train_draws_predictions(synth_dir, tmp_path) -> None:
    result = api.train(micro_cfg(synth_dir, iters=2), out=tmp_path / "run", device="cpu", progress=False)
    (record,) = _evals(tmp_path / "run")
    terms = {"val_loss_class", "val_loss_bbox", "val_loss_giou", "val_loss_class_aux0"}
    assert record["val_loss"] > 0 and terms <= set(record)
    assert result.evaluation.losses["val_loss"] == pytest.approx(record["val_loss"])
    # the weighted total of the terms, as training sums them (detr-tiny: class 2, bbox 5, giou 2, aux alike)
    w = {"class": 2.0, "bbox": 5.0, "giou": 2.0}
    total = sum(w[k.split("_")[2]] * v for k, v in record.items() if k.startswith("val_loss_"))
    assert total == pytest.approx(record["val_loss"], rel=1e-5)
    assert (tmp_path / "run" / "predictions.png").stat().st_size > 1000


def test_an_evaluation_leaves_the_global_random_state_alone(synth_dir) -> None:
    # the mask loss samples points: an evaluation with the criterion must not move training's random stream
    from matchdetr.compose.criterion import build_criterion
    from matchdetr.data.coco import resolve_split
    from matchdetr.engine.evaluate import eval_dataset, evaluate

    gt = json.loads((synth_dir / "annotations" / "instances_val.json").read_text())
    names = [c["name"] for c in gt["categories"]]
    sets = MICRO + resnet18("maskdino-tiny")
    model = matchdetr.build("maskdino-tiny", class_names=names, **dict(s.split("=", 1) for s in sets))
    dataset = eval_dataset(model.config, model.label_map, resolve_split(synth_dir, "val", None, None))
    before = torch.get_rng_state()
    result = evaluate(model.module, dataset, torch.device("cpu"), batch_size=4, num_workers=0, progress=False,
                      criterion=build_criterion(model.config.model))
    assert torch.equal(torch.get_rng_state(), before) and "val_loss_mask" in result.losses


def test_the_first_line_comes_before_the_data_is_read(synth_dir, tmp_path, capsys) -> None:
    cfg = micro_cfg(synth_dir)
    cfg.data.path = str(tmp_path / "missing")
    with pytest.raises((DatasetError, FileNotFoundError)):
        train(cfg, tmp_path / "run", device="cpu", progress=False)
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"training detr-tiny on {tmp_path / 'missing'} -> {tmp_path / 'run'} (cpu, 1 process)"
    # --resume where there is nothing to resume (a resumable benchmark's first run) still says "training"
    with pytest.raises((DatasetError, FileNotFoundError)):
        train(cfg, tmp_path / "run", device="cpu", progress=False, resume=True)
    assert capsys.readouterr().out.splitlines()[0].startswith("training detr-tiny")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True, exist_ok=True)
    (tmp_path / "run" / "checkpoints" / "iter_0000002.safetensors").write_bytes(b"")
    with pytest.raises(Exception):
        train(cfg, tmp_path / "run", device="cpu", progress=False, resume=True)
    assert capsys.readouterr().out.splitlines()[0].startswith("resuming detr-tiny")


def test_a_stop_signal_at_an_evaluation_is_evaluated_on_resuming(synth_dir, tmp_path) -> None:
    import signal

    from matchdetr.engine.guard import TrainingStopped
    from matchdetr.engine.train import Trainer

    ref = train(micro_cfg(synth_dir, iters=4), tmp_path / "ref", device="cpu", progress=False)
    trainer = Trainer(micro_cfg(synth_dir, iters=4), tmp_path / "run", device="cpu", progress=False)
    step = trainer.step

    class Signalled:  # SIGTERM arrives during the step that ends at iteration 2 (an evaluation's)
        stop_requested = property(lambda self: step.stop_requested)

        def __call__(self, batch, iteration):
            if iteration == 1:
                trainer.signals.received = signal.SIGTERM
            return step(batch, iteration)

    trainer.step = Signalled()
    with pytest.raises(TrainingStopped, match="stopped by SIGTERM at iteration 2/4"):
        trainer.run()
    assert _evals(tmp_path / "run") == []  # the stop skipped the evaluation of iteration 2
    train(micro_cfg(synth_dir, iters=4), tmp_path / "run", device="cpu", resume=True, progress=False)
    assert _evals(tmp_path / "run") == _evals(ref.run_dir)  # evaluated on resuming: iterations 2 and 4, same AP
    assert ck.read_meta(tmp_path / "run" / "best.safetensors")["iteration"] == ck.read_meta(
        ref.run_dir / "best.safetensors")["iteration"]
