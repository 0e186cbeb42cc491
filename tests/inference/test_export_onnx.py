"""ONNX export: one graph per model family, dynamic batch and image size, onnxruntime == PyTorch within 1e-3."""

from __future__ import annotations

import json

import pytest
import torch

import matchdetr
from matchdetr.inference.export import META_KEY, check_onnx, export_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

# One preset per model family (SMCA in both its forms). Add new families here.
EXPORT_PRESETS = [
    "detr-tiny",
    "deformable-detr-tiny",
    "deformable-detr-two-stage-tiny",
    "dab-deformable-detr-tiny",
    "dino-tiny",
    "stable-dino-tiny",
    "sam-detr-tiny",
    "sam-detr-plus-plus-tiny",
    "sam-detr-smca-tiny",
    "smca-detr-tiny",
]
# Micro sizes: the export and two onnxruntime runs take about a second per family.
MICRO = dict(transformer__hidden_dim=32, transformer__num_heads=4,
             transformer__dim_feedforward=64, transformer__enc_layers=1, transformer__dec_layers=2,
             transformer__num_queries=12, data__test_size=96, data__test_max_size=160)
SIZES = ((96, 96), (80, 136))  # two sizes, neither the traced one's aspect


def micro_model(name: str, num_classes: int = 5, seed: int = 0) -> matchdetr.Detector:
    """A micro model whose weights are all perturbed: with the fresh init (zero attention weights, zero box
    heads) many paths would be constant and a broken export could still match."""
    torch.manual_seed(seed)
    det = matchdetr.build(name, num_classes=num_classes, **MICRO).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in det.state_dict().items():
            if name.endswith("running_var"):  # a variance stays positive (ImageNet ones go down to ~1e-3)
                p.mul_(1 + 0.05 * torch.rand(p.shape, generator=g))
            elif p.is_floating_point():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return det


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", EXPORT_PRESETS)
def test_onnx_round_trip_two_sizes(tmp_path, name: str) -> None:
    det = micro_model(name)
    path = export_onnx(det.module, det.config, det.label_map, tmp_path / f"{name}.onnx", topk=20, sample_size=(112, 112))
    model = onnx.load(str(path))
    assert model.opset_import[0].version >= 16
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert dims == {"images": ["batch", 3, "height", "width"], "pixel_mask": ["batch", "height", "width"]}
    meta = json.loads({p.key: p.value for p in model.metadata_props}[META_KEY])
    assert meta["label_map"] == det.label_map.to_dict() and meta["inputs"] == ["images", "pixel_mask"]
    diffs = check_onnx(det.module, path, sizes=SIZES)  # batch of 2, second image padded
    assert set(diffs) == {"logits", "boxes", "scores", "boxes_xyxy"}
    assert max(diffs.values()) < 1e-3, diffs


# A micro Swin (2 blocks a stage: the second shifted) on DINO: the window padding, the shift mask and the odd-size
# padding of patch merging are computed from the input size inside the graph.
MICRO_SWIN = {"kind": "swin", "embed_dim": 16, "depths": [2, 2, 2, 2], "num_heads": [1, 2, 2, 4], "window_size": 7,
              "return_levels": [3, 4, 5]}


@pytest.mark.filterwarnings("ignore")
def test_onnx_swin_two_sizes(tmp_path) -> None:
    torch.manual_seed(0)
    det = matchdetr.build("dino-tiny", num_classes=5, backbone=MICRO_SWIN, **MICRO).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in det.state_dict().values():
            if p.is_floating_point():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    path = export_onnx(det.module, det.config, det.label_map, tmp_path / "swin.onnx", sample_size=(112, 112))
    # 96 x 96: 24 x 24 tokens, padded to 28 in the first stage; 90 x 150: not a multiple of 4 nor of 32
    diffs = check_onnx(det.module, path, sizes=((96, 96), (90, 150)))
    assert max(diffs.values()) < 1e-3, diffs


@pytest.mark.filterwarnings("ignore")
def test_onnx_images_only_and_batch_of_three(tmp_path) -> None:
    det = micro_model("detr-tiny", seed=1)  # the missing mask is made inside Detector.forward, for every family
    path = export_onnx(det.module, det.config, det.label_map, tmp_path / "m.onnx", with_mask=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["logits", "boxes"]
    diffs = check_onnx(det.module, path, sizes=((64, 96),), batch=3)
    assert max(diffs.values()) < 1e-3, diffs


def test_export_rejects_bad_arguments(tmp_path) -> None:
    det = micro_model("detr-tiny")
    with pytest.raises(ValueError, match="opset"):
        export_onnx(det.module, det.config, det.label_map, tmp_path / "m.onnx", opset=15)
    with pytest.raises(ValueError, match="topk"):
        export_onnx(det.module, det.config, det.label_map, tmp_path / "m.onnx", topk=10**6)


@pytest.mark.filterwarnings("ignore")
def test_cli_export_with_check(tmp_path, capsys) -> None:
    from matchdetr.cli import main

    det = micro_model("detr-tiny")
    det.save(str(tmp_path / "ck.safetensors"))
    out = tmp_path / "model.onnx"
    rc = main(["export", "--checkpoint", str(tmp_path / "ck.safetensors"), "--format", "onnx", "--out", str(out),
               "--check"])
    text = capsys.readouterr().out
    assert rc == 0 and out.exists(), text
    assert "dynamic batch, height, width" in text and "onnxruntime vs PyTorch" in text
    assert main(["export", "--checkpoint", str(tmp_path / "nope.safetensors"), "--out", str(out)]) == 2
    assert "error" in capsys.readouterr().err


def test_cli_export_help(capsys) -> None:
    from matchdetr.cli import main

    with pytest.raises(SystemExit) as info:
        main(["export", "--help"])
    assert info.value.code == 0 and "--checkpoint" in capsys.readouterr().out
