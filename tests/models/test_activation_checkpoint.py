"""Activation checkpointing (``train.checkpoint_activations``, ``models/layers.py: run_layer``): the same loss
and gradients as the plain forward, with less kept for the backward pass."""

from __future__ import annotations

import pytest
import torch

from conftest import MICRO, resnet18

import matchdetr
from matchdetr.compose import build_criterion
from matchdetr.config import ConfigError, apply_overrides
from matchdetr.models.layers import set_activation_checkpointing
from matchdetr import presets
from matchdetr.structures import Target

SIZE = 96


def _build(name: str) -> matchdetr.Detector:
    torch.manual_seed(0)
    # dropout on, so the recomputation must draw the same masks again
    overrides = dict(s.split("=", 1) for s in MICRO + resnet18(name) + ["model.transformer.dropout=0.2"])
    return matchdetr.build(name, num_classes=5, **overrides)


def _step(model: matchdetr.Detector) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
    """Loss, gradients and the bytes autograd saved, of one training forward/backward with fixed noise."""
    targets = [Target(torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.2]]), torch.tensor([1, 2]), 0,
                      (SIZE, SIZE), (SIZE, SIZE)),
               Target(torch.tensor([[0.4, 0.5, 0.2, 0.3]]), torch.tensor([3]), 1, (SIZE, SIZE), (SIZE, SIZE))]
    images = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    model.train()
    torch.manual_seed(5)  # dropout and denoising noise
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = build_criterion(model.config.model)(model(images, None, targets), targets).total
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, sum(saved.values())


@pytest.mark.parametrize("name", ["stable-dino-tiny", "sam-detr-plus-plus-tiny", "detr-tiny"])
def test_checkpointed_layers_give_the_same_gradients_for_less_memory(name: str) -> None:
    plain = _build(name)
    ckpt = _build(name)
    ckpt.load_state_dict(plain.state_dict())
    assert set_activation_checkpointing(ckpt) == 2  # the encoder and the decoder stack
    loss_a, grads_a, saved_a = _step(plain)
    loss_b, grads_b, saved_b = _step(ckpt)
    assert torch.equal(loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 0
    for n in grads_a:
        torch.testing.assert_close(grads_b[n], grads_a[n], rtol=1e-5, atol=1e-6, msg=n)
    assert saved_b < 0.8 * saved_a  # the layers' activations are recomputed, not kept
    # eval / no-grad forwards never checkpoint (nothing to recompute) and give the plain outputs
    ckpt.eval()
    plain.eval()
    with torch.no_grad():
        x = torch.randn(1, 3, SIZE, SIZE)
        assert torch.equal(ckpt(x).logits, plain(x).logits)


def test_checkpoint_activations_key_trains(synth_dir, tmp_path) -> None:
    from matchdetr.cli import main

    cfg = presets.get("detr-tiny")
    assert cfg.train.checkpoint_activations is False
    with pytest.raises(ConfigError, match="train.checkpoint_activations"):
        apply_overrides(cfg, ["train.checkpoint_activations=sometimes"])
    args = ["train", "--model", "stable-dino-tiny", "--data", str(synth_dir), "--out", str(tmp_path / "run"),
            "--iters", "2", "--batch-size", "2", "--device", "cpu", "--set", "train.checkpoint_activations=true"]
    assert main(args + [x for o in MICRO + resnet18("stable-dino-tiny") + ["data.num_workers=0"] for x in ("--set", o)]) == 0
    trained = matchdetr.load(tmp_path / "run")  # the run's newest complete weights
    assert trained.config.train.checkpoint_activations is True
