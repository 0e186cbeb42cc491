"""`matchdetr convert official` on detrex's DINO-Swin / Stable-DINO-Swin checkpoints.

detrex builds detectron2's Swin unchanged under ``backbone.`` (``projects/dino/configs/models/dino_swin_*.py``):
the same block names as ours, plus each block's ``attn.relative_position_index`` buffer and the output norms
``backbone.norm{i}``. The state dicts here are written by the test's own inverse (our names -> detrex's, the index
buffers computed as Microsoft's code does) and checked against names and shapes read off the release code.
"""

from __future__ import annotations

import re

import pytest
import torch

import matchdetr
from matchdetr import presets
from matchdetr.cli import main
from matchdetr.compose import build_model
from matchdetr.interop.hf_deformable_detr import ConversionError
from matchdetr.interop.official import map_state_dict
from matchdetr.interop.official_dino import family as dino_family
from test_convert_official import to_detrex


def microsoft_index(window: int) -> torch.Tensor:
    """``relative_position_index`` as microsoft/Swin-Transformer's WindowAttention builds it."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[:, :, 0] * (2 * window - 1) + rel[:, :, 1]


def swin_detrex(ours: dict[str, torch.Tensor], window: int) -> dict[str, torch.Tensor]:
    """Our Swin detector's state dict -> detrex's: the backbone keeps its names and gains the index buffers."""
    out = to_detrex({k: v for k, v in ours.items() if not k.startswith("backbone.")})
    for key, value in ours.items():
        if key.startswith("backbone."):
            out[key] = value
            if key.endswith(".attn.relative_position_bias_table"):
                out[key.replace("bias_table", "index")] = microsoft_index(window)
    return out


def empty_model(name: str) -> torch.nn.Module:
    """The full-size preset at 80 classes with uninitialised storage (names and shapes are what matter)."""
    cfg = presets.get(name)
    cfg.model.num_classes = 80
    with torch.device("meta"):
        model = build_model(cfg.model)
    model = model.to_empty(device="cpu")
    with torch.no_grad():  # defined values: tied copies are compared by value (uninitialised memory may hold NaN)
        for t in model.state_dict().values():
            t.zero_()
    return model


# detrex DINO-4scale Swin-L-384 (dino_swin_large_384_4scale_*.pth): names and shapes from the release code
DETREX_SWIN_L = {
    "backbone.patch_embed.proj.weight": (192, 3, 4, 4),
    "backbone.patch_embed.norm.weight": (192,),
    "backbone.layers.0.blocks.1.attn.qkv.weight": (576, 192),
    "backbone.layers.2.blocks.17.attn.relative_position_bias_table": (529, 24),  # (2*12-1)^2 rows, 24 heads
    "backbone.layers.2.blocks.17.attn.relative_position_index": (144, 144),
    "backbone.layers.2.blocks.17.mlp.fc1.weight": (3072, 768),
    "backbone.layers.2.downsample.reduction.weight": (1536, 3072),
    "backbone.layers.2.downsample.norm.weight": (3072,),
    "backbone.layers.3.blocks.1.attn.proj.weight": (1536, 1536),
    "backbone.norm1.weight": (384,), "backbone.norm3.bias": (1536,),
    "neck.convs.0.conv.weight": (256, 384, 1, 1), "neck.convs.2.conv.weight": (256, 1536, 1, 1),
    "neck.extra_convs.0.conv.weight": (256, 1536, 3, 3),
    "transformer.level_embeds": (4, 256), "transformer.tgt_embed.weight": (900, 256),
    "label_enc.weight": (80, 256), "class_embed.6.weight": (80, 256),
}


@pytest.mark.parametrize("family,preset", [("dino", "dino-4scale-swin-l"), ("stable-dino", "stable-dino-4scale-swin-l")])
def test_full_size_swin_l_names_shapes_and_preset(family, preset):
    target = empty_model(preset).state_dict()
    official = swin_detrex(target, 12)
    for key, shape in DETREX_SWIN_L.items():
        assert tuple(official[key].shape) == shape, key
    backbone = [k for k in official if k.startswith("backbone.")]
    assert len(backbone) == 355  # the release's Swin-L: 24 blocks x 14 + stem 4 + 3 merges x 3 + 3 norms x 2
    fam = dino_family(family)
    cfg = fam.config(official, None, "x")
    assert cfg.preset == preset and cfg.model.backbone == presets.get(preset).model.backbone
    converted = map_state_dict(fam, official, target, "x")
    assert set(converted) == set(target)


def test_five_scale_and_other_sizes_are_read_off_the_weights():
    five = swin_detrex(empty_model("dino-5scale-swin-l").state_dict(), 12)
    assert tuple(five["backbone.norm0.weight"].shape) == (192,)
    assert dino_family("dino").config(five, None, "x").preset == "dino-5scale-swin-l"
    # a Swin-S-224 model (no preset of its own): the Swin-L preset of its scale, its backbone from the weights
    cfg = presets.get("dino-4scale-swin-t")
    cfg.model.backbone.depths = [2, 2, 18, 2]
    cfg.model.num_classes = 80
    with torch.device("meta"):
        small = swin_detrex(build_model(cfg.model).state_dict(), 7)
    got = dino_family("dino").config(small, None, "x")
    b = got.model.backbone
    assert got.preset == "dino-4scale-swin-l"
    assert (b.embed_dim, b.depths, b.num_heads, b.window_size, b.drop_path_rate) == (
        96, [2, 2, 18, 2], [3, 6, 12, 24], 7, 0.2)


def test_a_wrong_index_buffer_is_refused(tmp_path, capsys):
    official = swin_detrex(empty_model("dino-4scale-swin-t").state_dict(), 7)
    key = "backbone.layers.1.blocks.0.attn.relative_position_index"
    official[key] = official[key].flip(0)
    src = tmp_path / "bad.pth"
    torch.save({"model": official}, src)
    assert main(["convert", "official", "--family", "dino", str(src), str(tmp_path / "out.safetensors")]) != 0
    err = capsys.readouterr().err.strip()
    assert "relative_position_index" in err and str(src) in err and "\n" not in err
    assert not (tmp_path / "out.safetensors").exists()


def test_dino_swin_t_checkpoint_converts_and_runs_identically(tmp_path):
    """A detrex-layout DINO-4scale Swin-T state dict (the released 12-epoch model's names and shapes) converts
    with its preset read off the weights and gives the model's own outputs, bit for bit."""
    torch.manual_seed(0)
    ref = matchdetr.build("dino-4scale-swin-t", num_classes=80).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # perturb every weight: the fresh init leaves zero heads that would hide a wrong mapping
        for name, p in ref.state_dict().items():
            if p.is_floating_point() and not name.startswith("queries.label_enc"):
                p.add_(0.02 * torch.randn(p.shape, generator=g))
    official = swin_detrex(ref.state_dict(), 7)
    official["criterion.empty_weight"] = torch.ones(81)
    src = tmp_path / "dino_swin_tiny_224_4scale_12ep.pth"
    torch.save({"model": official, "iteration": 89999}, src)
    out = tmp_path / "converted.safetensors"
    assert main(["convert", "official", "--family", "dino", str(src), str(out)]) == 0
    got = matchdetr.load(out).eval()
    assert got.config.preset == "dino-4scale-swin-t"
    assert got.config.model.backbone == presets.get("dino-4scale-swin-t").model.backbone
    want_state = ref.state_dict()
    assert all(torch.equal(v, want_state[k]) for k, v in got.state_dict().items() if k != "queries.label_enc.weight")
    # 100 x 148: not a multiple of 32 and, at stride 32 (4 x 5 tokens), smaller than a 7 x 7 window
    pixels = torch.randn(2, 3, 100, 148, generator=g)
    pad = torch.zeros(2, 100, 148, dtype=torch.bool)
    pad[1, 70:, :], pad[1, :, 120:] = True, True
    with torch.no_grad():
        want, have = ref.module(pixels * ~pad[:, None], pad), got.module(pixels * ~pad[:, None], pad)
    assert torch.equal(have.logits, want.logits) and torch.equal(have.boxes, want.boxes)


def test_missing_backbone_keys_are_named(tmp_path, capsys):
    official = swin_detrex(empty_model("dino-4scale-swin-t").state_dict(), 7)
    for k in [k for k in official if re.match(r"backbone\.layers\.2\.blocks\.3\.", k)]:
        del official[k]
    src = tmp_path / "cut.pth"
    torch.save({"model": official}, src)
    with pytest.raises(ConversionError):
        map_state_dict(dino_family("dino"), official, empty_model("dino-4scale-swin-t").state_dict(), str(src))
    assert main(["convert", "official", "--family", "dino", str(src), str(tmp_path / "o.safetensors")]) != 0
    err = capsys.readouterr().err.strip()
    assert "layers.2.blocks.3" in err and "\n" not in err


@pytest.mark.slow
def test_swin_l_release_layout_through_the_cli(tmp_path, capsys):
    """The full-size DINO-4scale Swin-L layout (dino_swin_large_384_4scale_36ep.pth) through convert, eval, predict,
    export and ONNX predict (about 4 minutes on 2 cores; at 320 pixels to keep it there)."""
    import json

    torch.manual_seed(0)
    official = swin_detrex(matchdetr.build("dino-4scale-swin-l", num_classes=80).state_dict(), 12)
    src, conv = tmp_path / "dino_swin_large_384_4scale_36ep.pth", tmp_path / "conv.safetensors"
    torch.save({"model": official, "iteration": 269999}, src)
    sets = ["--set", "data.test_size=320", "--set", "data.test_max_size=480"]
    assert main(["convert", "official", "--family", "dino", *sets, str(src), str(conv)]) == 0
    assert matchdetr.load(conv).config.preset == "dino-4scale-swin-l"
    data = tmp_path / "data"
    assert main(["synth", str(data), "--train", "1", "--val", "2"]) == 0
    for split in ("train", "val"):  # the converted model knows COCO's names: give the shapes some of them
        ann = data / "annotations" / f"instances_{split}.json"
        d = json.loads(ann.read_text())
        for c, name in zip(d["categories"], ["person", "bicycle", "car", "motorcycle", "airplane", "bus", "train",
                                             "truck", "boat", "traffic light"]):
            c["name"] = name
        ann.write_text(json.dumps(d))
    assert main(["eval", "--checkpoint", str(conv), "--data", str(data), "--out", str(tmp_path / "ev")]) == 0
    assert set(json.loads((tmp_path / "ev" / "metrics.json").read_text())["metrics"]) >= {"AP", "AP50", "APl"}
    assert main(["predict", str(data / "val"), "--checkpoint", str(conv), "--out", str(tmp_path / "p"),
                 "--threshold", "0"]) == 0
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", "--checkpoint", str(conv), "--out", str(onnx_path)]) == 0
    assert main(["predict", str(data / "val"), "--model", str(onnx_path), "--out", str(tmp_path / "q"),
                 "--threshold", "0"]) == 0
    torch_dets = json.loads((tmp_path / "p" / "detections.json").read_text())
    onnx_dets = json.loads((tmp_path / "q" / "detections.json").read_text())
    assert [len(i["detections"]) for i in torch_dets] == [len(i["detections"]) for i in onnx_dets] == [300, 300]
