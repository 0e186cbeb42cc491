"""The object users hold (matchdetr.Model) and the Python training API: build -> fit -> evaluate -> predict ->
save -> load -> fit on, and resume, as a notebook user would, with the CLI's guarantees (run directories,
one-line exceptions, no sys.exit)."""

from __future__ import annotations

import pytest
import torch
from conftest import MICRO

import matchdetr
from matchdetr.config import ConfigError
from matchdetr.data.common import DatasetError
from matchdetr.engine.run_dir import RunDirError

SETS = {k: v for k, v in (s.split("=", 1) for s in MICRO + ["data.num_workers=0"])}


def test_the_model_carries_its_module_config_and_classes() -> None:
    model = matchdetr.build("detr-tiny", class_names=["cat", "dog"], **SETS)
    assert isinstance(model, matchdetr.Model) and model.names == ["cat", "dog"]
    assert isinstance(model.module, matchdetr.Detector) and not hasattr(model.module, "config")
    assert model.config.model.num_classes == 2 and model.fresh
    assert model.eval() is model and model.to("cpu") is model  # chainable, as on an nn.Module
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in model.module.parameters())
    assert "Model(preset='detr-tiny'" in repr(model)
    with pytest.raises(ConfigError, match="num_classes=3 but 2 class_names"):
        matchdetr.build("detr-tiny", num_classes=3, class_names=["a", "b"])


def test_fit_trains_evaluates_and_the_model_holds_the_trained_weights(synth_dir, tmp_path) -> None:
    model = matchdetr.build("detr-tiny", **SETS)
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    result = model.fit(data=synth_dir, out=tmp_path / "run", iters=4, batch_size=2, progress=False)
    assert result.iterations == 4 and "AP" in result.metrics and (tmp_path / "run" / "model.safetensors").is_file()
    assert not model.fresh and model.config.model.num_classes == len(model.label_map) == 10  # the dataset's classes
    assert model.config.data.path == str(synth_dir.resolve())  # recorded: the run can be resumed by itself
    assert model.config.train.iters == 4 and model.config.train.lr_drop == 3  # 1200 of 1500 moved to 3 of 4
    assert any(not torch.equal(before[k], v) for k, v in model.module.state_dict().items() if k in before
               and v.shape == before[k].shape)
    again = model.evaluate(data=synth_dir, progress=False)  # batch 8: an image's answer ignores its batch
    assert again.metrics == pytest.approx(result.metrics, abs=1e-6, nan_ok=True)  # train's evaluation, again
    loaded = matchdetr.load(tmp_path / "run")
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x).logits, model.eval()(x).logits)
    assert (tmp_path / "run" / "predictions.png").is_file() and (tmp_path / "run" / "best.safetensors").is_file()
    dets = model.predict([str(next((synth_dir / "val").iterdir()))], threshold=0.0)
    assert set(dets[0]) == {"boxes", "scores", "labels", "names"}


def test_fit_resumes_a_stopped_run_and_resume_continues_it_alone(synth_dir, tmp_path) -> None:
    run = tmp_path / "run"
    model = matchdetr.build("detr-tiny", **SETS)
    model.fit(data=synth_dir, out=run, iters=2, batch_size=2, checkpoint_every=1, val=False, progress=False)
    # the same directory again without resume: refused in one line, nothing touched
    with pytest.raises(RunDirError, match="already holds a run"):
        matchdetr.build("detr-tiny", **SETS).fit(data=synth_dir, out=run, iters=4, progress=False)
    result = matchdetr.resume(run, iters=4, progress=False)  # the run's own config, data included
    assert result.iterations == 4 and result.config.train.iters == 4
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert sum('"type": "train"' in line for line in lines) >= 2


def test_a_loaded_model_fits_on_from_its_weights(synth_dir, tmp_path, capsys) -> None:
    base = matchdetr.build("detr-tiny", **SETS)
    base.fit(data=synth_dir, out=tmp_path / "a", iters=2, batch_size=2, val=False, progress=False)
    loaded = matchdetr.load(tmp_path / "a")
    loaded.fit(data=synth_dir, out=tmp_path / "b", iters=1, batch_size=2, val=False, progress=False)
    assert "initialised from the model's weights: all" in capsys.readouterr().out


def test_errors_are_exceptions_not_exits(tmp_path) -> None:
    model = matchdetr.build("detr-tiny", **SETS)
    with pytest.raises(DatasetError, match="no dataset"):
        model.fit(out=tmp_path / "x", iters=1, progress=False)
    with pytest.raises(ConfigError, match="'train.lr' must be >= 0"):
        model.fit(data=tmp_path, out=tmp_path / "x", iters=1, lr=-1.0, progress=False)
    with pytest.raises(DatasetError):
        model.fit(data=tmp_path / "nope", out=tmp_path / "x", iters=1, progress=False)
    with pytest.raises(RunDirError, match="no run to continue"):
        matchdetr.resume(tmp_path / "empty")


def test_dir_lists_the_public_api() -> None:
    assert {"build", "load", "train", "resume", "Model", "Config"} <= set(dir(matchdetr))


def test_predict_takes_grayscale_rgba_float_and_channels_first_arrays() -> None:
    """The rule (io/decode.py: as_rgb): HxW is grey; channels last when the last axis has 1, 3 or 4 entries,
    else channels first (CHW, as a torch image tensor is); 4 channels are RGBA, composited over white as an
    RGBA file is; floats must lie in [0, 1] and are scaled by 255; torch tensors are read like arrays."""
    import numpy as np
    import torch
    from PIL import Image

    model = matchdetr.build("detr-tiny", num_classes=3, **SETS)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (40, 56, 1), dtype=np.uint8)
    composited = Image.alpha_composite(Image.new("RGBA", (56, 40), (255, 255, 255, 255)),
                                       Image.fromarray(np.concatenate([rgb, alpha], 2), "RGBA")).convert("RGB")
    grey = rgb[..., 0]
    same = {  # each input -> the uint8 RGB image it must be read as
        "HxW grey": (grey, np.repeat(grey[..., None], 3, 2)),
        "HxWx1 grey": (grey[..., None], np.repeat(grey[..., None], 3, 2)),
        "HxWx4 RGBA": (np.concatenate([rgb, alpha], 2), np.asarray(composited)),
        "float HxWx3 in [0, 1]": (rgb.astype(np.float32) / 255, rgb),
        "CHW uint8": (rgb.transpose(2, 0, 1).copy(), rgb),
        "CHW float tensor": (torch.from_numpy(rgb.transpose(2, 0, 1) / 255.0), rgb),
    }
    for what, (given, expected) in same.items():
        got, ref = model.predict(given, threshold=0.0)[0], model.predict(expected, threshold=0.0)[0]
        assert torch.equal(got["scores"], ref["scores"]) and torch.equal(got["boxes"], ref["boxes"]), what
    with pytest.raises(ValueError, match=r"float images must lie in \[0, 1\]"):
        model.predict(rgb.astype(np.float32))  # 0..255 floats: ambiguous, refused with the rule
    with pytest.raises(ValueError, match="channels"):
        model.predict(np.zeros((40, 56, 2), dtype=np.uint8))
