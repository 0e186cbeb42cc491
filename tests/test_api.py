from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import matchdetr
from matchdetr.config import ConfigError
from matchdetr.data.coco import LabelMap
from matchdetr.engine.checkpoint import CheckpointError


def small(**kw):
    return matchdetr.build("detr-tiny", num_classes=3, transformer__hidden_dim=32, transformer__num_heads=4,
                           transformer__num_queries=7, **kw)


def test_build_overrides_and_errors():
    det = small()
    assert det.config.model.transformer.num_queries == 7 and det.config.model.num_classes == 3
    with pytest.raises(ConfigError, match="unknown config key"):
        small(transformer__bogus=1)
    with pytest.raises(ConfigError, match="available"):
        matchdetr.build("nope")


def test_output_contract():
    det = small().eval()
    out = det(torch.randn(2, 3, 64, 64))
    assert out.logits.shape == (2, 7, 3) and out.boxes.shape == (2, 7, 4)
    assert ((out.boxes >= 0) & (out.boxes <= 1)).all()
    assert len(out.aux) == 2 and out.aux[0].logits.shape == (2, 7, 3)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        det(torch.randn(3, 64, 64))


def test_padding_mask_changes_nothing_for_valid_region():
    det = small().eval()
    img = torch.randn(1, 3, 64, 64)
    padded = torch.zeros(1, 3, 64, 96)
    padded[..., :64] = img
    mask = torch.zeros(1, 64, 96, dtype=torch.bool)
    mask[..., 64:] = True
    a, b = det(img), det(padded, mask)
    # Boxes are normalised to the valid image, so padding must not move them (only conv borders differ).
    assert torch.allclose(a.boxes, b.boxes, atol=0.05)


def test_save_load_roundtrip(tmp_path):
    det = small()
    det.label_map = LabelMap([3, 8, 11], ["a", "b", "c"])
    det.save(str(tmp_path / "m.safetensors"))
    back = matchdetr.load(tmp_path / "m.safetensors")
    assert back.label_map == det.label_map and back.config == det.config
    x = torch.randn(1, 3, 64, 64)
    det.eval()
    assert torch.equal(det(x).logits, back(x).logits)


def test_load_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such"):
        matchdetr.load(tmp_path / "missing.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        matchdetr.load(tmp_path / "empty")
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="x.safetensors"):
        matchdetr.load(bad)


def test_predict_accepts_paths_pil_and_arrays(tmp_path):
    det = small()
    det.label_map = LabelMap([3, 8, 11], ["a", "b", "c"])
    arr = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "i.png")
    rgba = Image.fromarray(arr).convert("RGBA")
    out = det.predict([str(tmp_path / "i.png"), rgba, arr], threshold=0.0)
    assert len(out) == 3
    for o in out:
        assert set(o["labels"].tolist()) <= {3, 8, 11}
        assert all(n in {"a", "b", "c"} for n in o["names"])
        assert (o["boxes"][:, 0::2] <= 70).all() and (o["boxes"][:, 1::2] <= 50).all()
    single = det.predict(arr, threshold=0.0)
    assert torch.allclose(single[0]["scores"], out[2]["scores"], atol=1e-5)  # batching changes float order only
    # grey and float images in [0, 1] are images (io/decode.as_rgb); a normalised one is refused in one line
    assert len(det.predict(np.zeros((5, 5), np.float32), threshold=0.0)) == 1
    with pytest.raises(ValueError, match=r"float images must lie in \[0, 1\]"):
        det.predict(np.full((5, 5, 3), -1.5, np.float32))
    assert det.training  # predict restores the mode


def test_checkpoint_state_is_weights_only(tmp_path):
    from matchdetr.engine.checkpoint import load_state

    marker = tmp_path / "code-ran"

    class Evil:  # unpickling calls open(marker, "w"): the file appears only if code ran
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.state.pt"
    torch.save({"optimizer": Evil()}, path)
    with pytest.raises(CheckpointError, match="evil.state.pt"):
        load_state(path)
    assert not marker.exists()
