"""The misuse corpus's shared inputs, made once per session: a trained micro run, its YOLO copy, its ONNX export."""

from __future__ import annotations

from pathlib import Path

import pytest

from .corpus import sets, train_args

from matchdetr.cli import main


@pytest.fixture(scope="session")
def trained_run(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished micro detr-tiny run (2 iterations, a checkpoint at each, evaluated): read-only for the tests
    (a test that writes into a run copies it first)."""
    out = tmp_path_factory.mktemp("run") / "run"
    args = train_args(synth_dir, out, *sets("train.checkpoint_every=1", "train.keep_last=2"))
    args[args.index("--iters") + 1] = "2"
    assert main(args) == 0
    return out


@pytest.fixture(scope="session")
def yolo_copy(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's synthetic set in YOLO layout: the same images, class indices 0..9 for COCO ids 1..13."""
    from matchdetr.data.convert import convert_dataset

    out = tmp_path_factory.mktemp("yolo") / "yolo"
    convert_dataset(synth_dir, "yolo", out)
    return out


@pytest.fixture(scope="session")
def onnx_model(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxruntime")
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert main(["export", "--checkpoint", str(trained_run), "--out", str(out)]) == 0
    return out
