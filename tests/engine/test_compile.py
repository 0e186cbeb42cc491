"""torch.compile of the detectors (``engine/compile.py``, ``train.compile``, ``predict --compile``).

The default suite checks the graphs (no graph break in deformable attention, RoIAlign, denoising or the
decoders, train and eval mode), compiled == eager through ``aot_eager`` (dynamo + AOT autograd, no code
generation) and the fallbacks. Inductor itself generates and builds C++ for every kernel: about 100 s for
one tiny forward on a loaded 2-core machine the first time (a few seconds once its cache in
``/tmp/torchinductor_$USER`` holds the kernels), so the inductor checks are ``slow``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from conftest import MICRO, resnet18

import matchdetr
from matchdetr import presets
from matchdetr.config import ConfigError, apply_overrides, train_config
from matchdetr.engine.compile import backend_problem, compile_model
from matchdetr.structures import Target

# A narrow ResNet-18 instead of EfficientNet-Lite0 (conftest.resnet18): far fewer kernels for inductor to generate.
SIZE = 96  # the smallest square the 4-level models take (a 64-px image leaves a 1x1 level for GroupNorm)


def _build(name: str, extra: list[str] = ()) -> matchdetr.Detector:
    torch.manual_seed(0)
    overrides = dict(s.split("=", 1) for s in MICRO + resnet18(name) + list(extra))
    return matchdetr.build(name, num_classes=5, **overrides)


def _twins(name: str) -> tuple[matchdetr.Detector, matchdetr.Detector]:
    eager = _build(name)
    compiled = _build(name)
    compiled.load_state_dict(eager.state_dict())
    return eager, compiled


def _targets() -> list[Target]:
    return [Target(torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.2]]), torch.tensor([1, 2]), 0,
                   (SIZE, SIZE), (SIZE, SIZE)),
            Target(torch.tensor([[0.4, 0.5, 0.2, 0.3]]), torch.tensor([3]), 1, (SIZE, SIZE), (SIZE, SIZE))]


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, SIZE, SIZE, generator=g)
    mask = torch.zeros(2, SIZE, SIZE, dtype=torch.bool)
    mask[1, :, SIZE - 16:] = True  # the second image is padded on the right
    return images, mask


@pytest.mark.parametrize("name,train", [("dino-tiny", True), ("sam-detr-plus-plus-smca-dn-tiny", True),
                                        ("deformable-detr-two-stage-tiny", False)])
def test_one_graph_without_breaks(name, train):
    """Deformable attention, RoIAlign (the Semantics Aligner), denoising and the decoders trace as one graph."""
    model = _build(name).train(train)
    images, mask = _inputs()
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(images, mask, _targets() if train else None)
    reasons = [r.reason.splitlines()[0] for r in explained.break_reasons]
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), reasons


def test_aot_eager_forward_and_backward_equal_eager():
    """The captured graph (dynamo + AOT autograd, run eagerly) gives eager's outputs and gradients; state dict
    keys stay the module's own (compiled in place)."""
    eager, compiled = _twins("dino-tiny")
    keys = list(compiled.state_dict())
    assert compile_model(compiled, backend="aot_eager")
    assert list(compiled.state_dict()) == keys
    images, mask = _inputs()
    outs = []
    for model in (eager, compiled):
        torch.manual_seed(5)  # the same denoising noise for both
        out = model.train()(images, mask, _targets())
        (out.logits.sigmoid().sum() + out.boxes.sum()).backward()
        outs.append(out)
    torch.testing.assert_close(outs[1].logits, outs[0].logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(outs[1].boxes, outs[0].boxes, atol=1e-5, rtol=0)
    grads = {n: p.grad for n, p in eager.named_parameters() if p.grad is not None}
    for n, p in compiled.named_parameters():
        if n in grads:
            torch.testing.assert_close(p.grad, grads[n], atol=1e-5, rtol=1e-4, msg=n)


def test_a_failing_backend_falls_back_to_eager_with_a_warning():
    def broken(gm, example_inputs):
        raise RuntimeError("no C++ compiler in this test")

    eager, compiled = _twins("deformable-detr-tiny")
    eager.eval(), compiled.eval()
    torch._dynamo.reset()
    assert compile_model(compiled, backend=broken)
    images, mask = _inputs()
    with torch.no_grad(), pytest.warns(UserWarning, match="torch.compile of Detector failed .*running eagerly"):
        out = compiled(images, mask)
    with torch.no_grad():
        assert torch.equal(out.logits, eager(images, mask).logits)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once fallen back, no second attempt and no second warning
            compiled(images, mask)


def test_without_a_cpp_compiler_the_model_stays_eager(monkeypatch):
    from torch._inductor import config

    monkeypatch.setattr(config.cpp, "cxx", ("/nonexistent/g++",))
    problem = backend_problem(torch.device("cpu"))
    assert problem is not None and "C++ compiler" in problem and "\n" not in problem
    model = _build("detr-tiny")
    with pytest.warns(UserWarning, match="torch.compile unavailable: no working C\\+\\+ compiler"):
        assert not compile_model(model)
    assert model._compiled_call_impl is None


def test_compile_key_is_a_validated_bool():
    cfg = presets.get("detr-tiny")
    assert cfg.train.compile is False
    apply_overrides(cfg, ["train.compile=true"])
    assert cfg.train.compile is True
    with pytest.raises(ConfigError, match="config key 'train.compile' expects a bool"):
        apply_overrides(cfg, ["train.compile=maybe"])


def test_predict_compile_refuses_an_onnx_model(tmp_path, capsys):
    from matchdetr.cli import main

    image = tmp_path / "x.png"
    image.write_bytes(b"")
    assert main(["predict", str(image), "--model", str(tmp_path / "m.onnx"), "--compile",
                 "--out", str(tmp_path / "out")]) == 2
    assert "--compile is for --checkpoint models" in capsys.readouterr().err


def test_predict_compile_without_a_compiler_warns_and_predicts(monkeypatch, synth_dir, tmp_path):
    from torch._inductor import config

    from matchdetr.cli import main

    checkpoint = tmp_path / "model.safetensors"
    _build("detr-tiny").save(str(checkpoint))
    monkeypatch.setattr(config.cpp, "cxx", ("/nonexistent/g++",))
    image = sorted((synth_dir / "val").iterdir())[0]
    with pytest.warns(UserWarning, match="torch.compile unavailable: no working C\\+\\+ compiler"):
        assert main(["predict", str(image), "--checkpoint", str(checkpoint), "--compile", "--device", "cpu",
                     "--threshold", "0", "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / f"{image.stem}.png").exists()


# ------------------------------------------------------------------------------------------- inductor (slow)
def _need_inductor() -> None:
    problem = backend_problem(torch.device("cpu"))
    if problem is not None:
        pytest.skip(problem)


@pytest.mark.slow
def test_inductor_forward_equals_eager():
    _need_inductor()
    eager, compiled = _twins("deformable-detr-tiny")
    eager.eval(), compiled.eval()
    torch._dynamo.reset()
    assert compile_model(compiled)
    images, mask = _inputs()
    with torch.no_grad():
        want, got = eager(images, mask), compiled(images, mask)
    assert compiled._compiled_call_impl.failed is False  # really compiled, not fallen back
    torch.testing.assert_close(got.logits, want.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.boxes, want.boxes, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def square_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """96 x 96 images, so every batch has one shape and the run compiles once."""
    from matchdetr.data.synthetic import generate

    out = tmp_path_factory.mktemp("square")
    generate(out, num_train=8, num_val=2, min_side=SIZE, max_side=SIZE, max_objects=4, seed=0, progress=False)
    return out


@pytest.mark.slow
def test_train_compile_runs_and_matches_eager_losses(square_data, tmp_path):
    _need_inductor()
    from matchdetr.data.coco import resolve_split
    from matchdetr.engine.train import train

    square = [f"data.train_scales=[{SIZE}]", f"data.train_max_size={SIZE}", f"data.crop_resize_scales=[{SIZE}]",
              f"data.crop_min={SIZE}", f"data.crop_max={SIZE}", "data.num_workers=0", "train.log_every=1",
              "model.transformer.dropout=0.0", "train.iters=3", "train.batch_size=2"]
    losses = {}
    for compiled in (False, True):
        cfg = apply_overrides(presets.get("deformable-detr-tiny"),
                              MICRO + resnet18("deformable-detr-tiny") + square + [f"train.compile={compiled}"])
        out = tmp_path / str(compiled)
        torch._dynamo.reset()
        train(train_config(cfg, square_data), out, val=False, device="cpu", progress=False)
        lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
        losses[compiled] = [l["loss"] for l in lines if l["type"] == "train"]
    assert len(losses[True]) == 3 and all(map(torch.isfinite, torch.tensor(losses[True])))
    torch.testing.assert_close(torch.tensor(losses[True]), torch.tensor(losses[False]), rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_torchrun_two_processes_compiled_match_eager_losses(square_data, tmp_path, cli_env):
    """DDP around the compiled module (dynamo's DDP graph splitting) on gloo: the same losses as eager DDP."""
    _need_inductor()
    import subprocess
    import sys

    from test_distributed_faults import _port

    square = [f"data.train_scales=[{SIZE}]", f"data.train_max_size={SIZE}", f"data.crop_resize_scales=[{SIZE}]",
              f"data.crop_min={SIZE}", f"data.crop_max={SIZE}", "data.num_workers=0", "train.log_every=1",
              "model.transformer.dropout=0.0"]
    losses = {}
    for compiled in ("false", "true"):
        out = tmp_path / compiled
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_port()),
               "-m", "matchdetr", "train", "--model", "deformable-detr-tiny", "--data", str(square_data), "--out",
               str(out), "--iters", "3", "--batch-size", "2", "--device", "cpu", "--no-val", "--no-progress"]
        cmd += sum((["--set", s] for s in MICRO + resnet18("deformable-detr-tiny") + square + [f"train.compile={compiled}"]), [])
        proc = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "running eagerly" not in proc.stderr
        lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
        losses[compiled] = torch.tensor([l["loss"] for l in lines if l["type"] == "train"])
    assert len(losses["true"]) == 3
    torch.testing.assert_close(losses["true"], losses["false"], rtol=1e-3, atol=1e-4)
