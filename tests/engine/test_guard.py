"""Non-finite guard (issue #9 item 1): NaN/inf losses or gradients skip the step with a warning naming the
iteration and the term; K in a row stop the run with a checkpoint and one line. fp16 overflow is the grad
scaler's; under autocast the deformable attention and the losses compute in fp32."""

from __future__ import annotations

import os
import signal
import warnings

import pytest
import torch

from matchdetr.config import train_config
from safetensors.torch import load_file

from test_train import micro_cfg

from matchdetr.data.coco import resolve_split
from matchdetr.engine import checkpoint as ck
from matchdetr.engine.guard import NonFiniteError, NonFiniteGuard, NonFiniteWarning, StopSignals, TrainingStopped
from matchdetr.engine.train import Trainer


def make_trainer(synth_dir, out, **opts) -> Trainer:
    cfg = micro_cfg(batch_size=2, checkpoint_every=100, **opts)
    cfg.data.num_workers = 0
    return Trainer(train_config(cfg, synth_dir), out, val=False, device="cpu", progress=False)


def poison(trainer: Trainer, iterations, term: str = "loss_giou", where: str = "loss") -> None:
    """Make ``term`` NaN (where="loss") or every gradient NaN with a finite loss (where="grad")."""
    criterion = trainer.step.criterion

    def wrapped(out, targets):
        loss = criterion(out, targets)
        if trainer.iteration in iterations:
            if where == "loss":
                loss.losses[term] = loss.losses[term] * float("nan")
                loss.total = loss.total + loss.losses[term]
            else:
                loss.total.register_hook(lambda g: g * float("nan"))
        return loss

    trainer.step.criterion = wrapped


def adam_steps(trainer: Trainer) -> int:
    return int(next(iter(trainer.optimizer.state.values()))["step"])


@pytest.mark.parametrize("where", ["loss", "grad"])
def test_nonfinite_step_is_skipped_with_a_named_warning(synth_dir, tmp_path, where):
    trainer = make_trainer(synth_dir, tmp_path, iters=4)
    poison(trainer, {1}, where=where)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = trainer.run()
    notes = [str(w.message) for w in caught if issubclass(w.category, NonFiniteWarning)]
    assert len(notes) == 1, notes
    if where == "loss":
        assert notes[0].startswith("iteration 1: non-finite loss (loss_giou)")
    else:
        assert notes[0].startswith("iteration 1: non-finite gradient") and "first bad gradient: " in notes[0]
    assert result.iterations == 4 and adam_steps(trainer) == 3  # the poisoned step never reached the optimizer
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_consecutive_nonfinite_steps_stop_with_a_checkpoint(synth_dir, tmp_path):
    trainer = make_trainer(synth_dir, tmp_path, iters=50, max_nonfinite_skips=3)
    poison(trainer, set(range(2, 50)), term="loss_class")
    with pytest.warns(NonFiniteWarning), pytest.raises(NonFiniteError) as info:
        trainer.run()
    message = str(info.value)
    assert "\n" not in message and info.value.exit_code == 2
    assert "iteration 5 after 3 consecutive non-finite steps (last: non-finite loss (loss_class))" in message
    [(it, weights, _)] = ck.checkpoint_paths(tmp_path)
    assert it == 5 and str(weights) in message
    saved = load_file(str(weights))
    assert all(torch.equal(saved[k], v) for k, v in trainer.model.state_dict().items())  # the last good weights
    assert all(torch.isfinite(v).all() for v in saved.values() if v.is_floating_point())
    assert adam_steps(trainer) == 2


def test_cli_reports_a_stopped_run_in_one_line(synth_dir, tmp_path, monkeypatch, capsys):
    import matchdetr.engine.train as train_mod
    from matchdetr.cli import main

    def stopped(*args, **kwargs):
        raise NonFiniteError("training stopped at iteration 9 after 3 consecutive non-finite steps")

    monkeypatch.setattr(train_mod, "train", stopped)
    code = main(["train", "--model", "detr-tiny", "--data", str(synth_dir), "--out", str(tmp_path), "--no-val"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "matchdetr: error: training stopped at iteration 9 after 3 consecutive non-finite steps"


def test_guard_counts_only_consecutive_skips():
    guard = NonFiniteGuard(2)
    with pytest.warns(NonFiniteWarning, match=r"iteration 3: x; step skipped \(1/2 in a row\)"):
        guard.skip(3, "x")
    guard.ok()
    with pytest.warns(NonFiniteWarning):
        guard.skip(4, "y")
    assert not guard.exhausted
    with pytest.warns(NonFiniteWarning):
        guard.skip(5, "z")
    assert guard.exhausted and guard.total == 3
    assert not NonFiniteGuard(0).exhausted  # 0 never stops


@pytest.mark.sends_stop_signals
def test_stop_signals_set_a_flag_and_restore_handlers():
    # Python's own SIGINT handler, whatever the runner left: a job started in the background (CI, nohup) has
    # SIGINT ignored, and the second Ctrl-C below would then be ignored too instead of raising.
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _check_stop_signals()
    finally:
        signal.signal(signal.SIGINT, outer)


def _check_stop_signals() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals() as signals:
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.received == signal.SIGTERM  # the process is still alive: only a flag was set
        os.kill(os.getpid(), signal.SIGINT)
        assert signals.received == signal.SIGTERM  # the first signal is the one reported
    assert signal.getsignal(signal.SIGTERM) is before
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C twice: the default handler runs at once
        with StopSignals():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.sends_stop_signals
def test_signal_during_training_saves_and_raises(synth_dir, tmp_path):
    trainer = make_trainer(synth_dir, tmp_path, iters=20)
    criterion = trainer.step.criterion

    def signalling(out, targets):
        if trainer.iteration == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return criterion(out, targets)

    trainer.step.criterion = signalling
    with pytest.raises(TrainingStopped, match=r"stopped by SIGTERM at iteration 4/20; checkpoint .*iter_0000004"):
        trainer.run()
    assert [i for i, _, _ in ck.checkpoint_paths(tmp_path)] == [4]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_fp16_overflow_is_left_to_the_grad_scaler(synth_dir, tmp_path):
    """An inf gradient at a large loss scale is overflow: the scaler skips and halves, the guard stays quiet."""
    trainer = make_trainer(synth_dir, tmp_path, iters=3, max_nonfinite_skips=1)
    trainer.scaler = trainer.step.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    poison(trainer, {0}, where="grad")
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonFiniteWarning)
        result = trainer.run()
    assert result.iterations == 3 and trainer.scaler.get_scale() == 2.0**15
    assert adam_steps(trainer) == 2


def test_bf16_autocast_keeps_deformable_attention_and_losses_in_fp32(monkeypatch):
    """CPU bf16 autocast stands in for CUDA AMP: sampling runs in fp32, every loss term is fp32 and finite."""
    import matchdetr
    from matchdetr.compose import build_criterion
    from matchdetr.structures import Target

    seen = []
    embedding_bag = torch.nn.functional.embedding_bag

    def spy(indices, rows, *args, per_sample_weights=None, **kwargs):  # the deformable sampling's sum
        seen.append((rows.dtype, per_sample_weights.dtype))
        return embedding_bag(indices, rows, *args, per_sample_weights=per_sample_weights, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "embedding_bag", spy)
    det = matchdetr.build("deformable-detr-tiny", num_classes=3, transformer__hidden_dim=32,
                          transformer__num_heads=4, transformer__dim_feedforward=64, transformer__enc_layers=1,
                          transformer__dec_layers=1, transformer__num_queries=6)
    images, mask = torch.randn(2, 3, 64, 64), torch.zeros(2, 64, 64, dtype=torch.bool)
    targets = [Target(torch.tensor([[0.5, 0.5, 0.2, 0.3]]), torch.tensor([1]), i, (64, 64), (64, 64)) for i in range(2)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = det(images, mask, targets)
    assert seen and all(a == torch.float32 and b == torch.float32 for a, b in seen)
    loss = build_criterion(det.config.model)(out, targets)  # the trainer calls it outside autocast
    assert loss.total.dtype == torch.float32 and torch.isfinite(loss.total)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in loss.losses.values())
    loss.total.backward()


@pytest.mark.parametrize("err", [TrainingStopped("stopped by SIGTERM at iteration 4/20", exit_code=130),
                                 NonFiniteError("12 non-finite steps in a row")])
def test_stops_survive_pickling(err):
    # A stop raised in a worker process (multiprocessing, ProcessPoolExecutor) reaches the parent by pickle.
    import pickle

    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err) and str(back) == str(err) and back.exit_code == err.exit_code
    assert back.args == (str(err),)
