"""`matchdetr convert official`: released DINO / Stable-DINO (detrex format) and SAM-DETR checkpoints.

The official state dicts are built here with the official names and shapes (from the release code: detrex
``projects/dino``, Stable-DINO ``projects/stabledino``, detectron2's ResNet, ZhangGongjie/SAM-DETR), written by a
hand-made inverse of our names that is independent of the converter's rules, plus a list of official keys and
shapes copied from the release code so the test does not only check the mapping against itself.
"""

from __future__ import annotations

import argparse
import json
import re

import pytest
import torch

import matchdetr
from matchdetr import presets
from matchdetr.cli import main
from matchdetr.interop.hf_deformable_detr import ConversionError
from matchdetr.interop.official import map_state_dict, read_checkpoint
from matchdetr.interop.official_dino import family as dino_family
from official_inverse import DETECTRON2_RESNET, is_packed, packed_self_attention, renamed

# The releases' backbones are ResNets; the -tiny presets' is an EfficientNet-Lite0. The tiny checkpoints of these
# tests are made with a quarter-width ResNet-18 instead, given to the converter with --set.
def resnet(preset: str) -> dict:
    """A quarter-width ResNet-18 at the preset's levels."""
    levels = presets.get(preset).model.backbone.return_levels
    return {"kind": "resnet", "depth": 18, "width": 16, "norm": "bn", "return_levels": levels}


def resnet_sets(preset: str) -> list[str]:
    return ["--set", f"model.backbone={json.dumps(resnet(preset))}"]


def tiny(preset: str, num_classes: int, **kw) -> matchdetr.Model:
    return matchdetr.build(preset, num_classes=num_classes, backbone=resnet(preset), **kw)


# ----------------------------------------------------------------------------------- detrex (DINO) names
def to_detrex(ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict -> a detrex DINO / Stable-DINO state dict (hand-written inverse, for the tests)."""
    subs = [*DETECTRON2_RESNET,  # (our regex, detrex replacement), first match wins
        (r"neck\.proj\.(\d+)\.0\.", r"neck.convs.\1.conv."), (r"neck\.proj\.(\d+)\.1\.", r"neck.convs.\1.norm."),
        (r"neck\.extra\.(\d+)\.0\.", r"neck.extra_convs.\1.conv."), (r"neck\.extra\.(\d+)\.1\.", r"neck.extra_convs.\1.norm."),
        (r"neck\.level_embed$", "transformer.level_embeds"),
        (r"encoder\.layers\.(\d+)\.self_attn\.", r"transformer.encoder.layers.\1.attentions.0."),
        (r"encoder\.layers\.(\d+)\.norm\.", r"transformer.encoder.layers.\1.norms.0."),
        (r"encoder\.layers\.(\d+)\.ffn\.norm\.", r"transformer.encoder.layers.\1.norms.1."),
        (r"(en|de)coder\.layers\.(\d+)\.ffn\.linear1\.", r"transformer.\1coder.layers.\2.ffns.0.layers.0.0."),
        (r"(en|de)coder\.layers\.(\d+)\.ffn\.linear2\.", r"transformer.\1coder.layers.\2.ffns.0.layers.1."),
        (r"fusion\.fuse\.proj\.", "transformer.encoder.fusion_layer.0."), (r"fusion\.fuse\.norm\.", "transformer.encoder.fusion_layer.1."),
        (r"decoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"transformer.decoder.layers.\1.attentions.0.attn.out_proj."),
        (r"decoder\.layers\.(\d+)\.cross_attn\.", r"transformer.decoder.layers.\1.attentions.1."),
        (r"decoder\.layers\.(\d+)\.norm1\.", r"transformer.decoder.layers.\1.norms.0."),
        (r"decoder\.layers\.(\d+)\.norm2\.", r"transformer.decoder.layers.\1.norms.1."),
        (r"decoder\.layers\.(\d+)\.ffn\.norm\.", r"transformer.decoder.layers.\1.norms.2."),
        (r"decoder\.norm\.", "transformer.decoder.norm."),
        (r"decoder\.query_pos\.ref_point_head\.", "transformer.decoder.ref_point_head."),
        (r"queries\.base\.", "transformer."), (r"head\.", ""),
    ]
    out: dict[str, torch.Tensor] = {}
    for key, value in ours.items():
        packed = packed_self_attention(ours, key)
        if packed:
            out[f"transformer.decoder.layers.{packed[0]}.attentions.0.attn.in_proj_{packed[1]}"] = packed[2]
            continue
        if is_packed(key):
            continue
        if key == "queries.label_enc.weight":
            out["label_enc.weight"] = value[:-1]  # detrex: nn.Embedding(num_classes, d)
            continue
        out[renamed(key, subs)] = value
    for key in list(out):  # detrex assigns the heads to transformer.decoder too: state_dict() holds them twice
        if key.startswith(("class_embed.", "bbox_embed.")):
            out["transformer.decoder." + key] = out[key]
    return out


# Official names and shapes of the released DINO-4scale R50 (80 classes, 900 queries), read off the detrex code.
DETREX_DINO_4SCALE = {
    "backbone.stem.conv1.weight": (64, 3, 7, 7),
    "backbone.stem.conv1.norm.running_var": (64,),
    "backbone.res2.0.shortcut.weight": (256, 64, 1, 1),
    "backbone.res2.0.shortcut.norm.weight": (256,),
    "backbone.res3.0.conv2.weight": (128, 128, 3, 3),
    "backbone.res4.5.conv1.norm.running_mean": (256,),
    "backbone.res5.2.conv3.norm.bias": (2048,),
    "neck.convs.0.conv.weight": (256, 512, 1, 1),
    "neck.convs.2.norm.weight": (256,),
    "neck.extra_convs.0.conv.weight": (256, 2048, 3, 3),
    "transformer.level_embeds": (4, 256),
    "transformer.tgt_embed.weight": (900, 256),
    "transformer.enc_output.weight": (256, 256),
    "transformer.enc_output_norm.bias": (256,),
    "transformer.encoder.layers.0.attentions.0.sampling_offsets.weight": (256, 256),
    "transformer.encoder.layers.5.attentions.0.attention_weights.weight": (128, 256),
    "transformer.encoder.layers.0.ffns.0.layers.0.0.weight": (2048, 256),
    "transformer.encoder.layers.0.ffns.0.layers.1.weight": (256, 2048),
    "transformer.encoder.layers.2.norms.1.weight": (256,),
    "transformer.decoder.layers.0.attentions.0.attn.in_proj_weight": (768, 256),
    "transformer.decoder.layers.0.attentions.0.attn.in_proj_bias": (768,),
    "transformer.decoder.layers.0.attentions.0.attn.out_proj.weight": (256, 256),
    "transformer.decoder.layers.3.attentions.1.value_proj.weight": (256, 256),
    "transformer.decoder.layers.5.norms.2.bias": (256,),
    "transformer.decoder.ref_point_head.layers.0.weight": (256, 512),
    "transformer.decoder.ref_point_head.layers.1.weight": (256, 256),
    "transformer.decoder.norm.weight": (256,),
    "transformer.decoder.class_embed.6.weight": (80, 256),
    "label_enc.weight": (80, 256),
    "class_embed.6.weight": (80, 256),
    "class_embed.0.bias": (80,),
    "bbox_embed.6.layers.2.weight": (4, 256),
    "bbox_embed.0.layers.0.weight": (256, 256),
}
STABLE_DINO_EXTRA = {"transformer.encoder.fusion_layer.0.weight": (256, 7 * 256), "transformer.encoder.fusion_layer.1.weight": (256,)}


def randomized(state: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in state.items():
        if not v.is_floating_point():
            out[k] = v.clone()
        elif k.endswith("running_var"):
            out[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            out[k] = torch.randn(v.shape, generator=g) * (0.3 if "sampling_offsets" in k else 0.05)
    return out


@pytest.mark.parametrize("family,preset,extra", [("dino", "dino-4scale-r50", {}),
                                                 ("stable-dino", "stable-dino-4scale-r50", STABLE_DINO_EXTRA)])
def test_full_size_detrex_names_and_shapes(family, preset, extra):
    """The released 4-scale R50 layout maps with zero missing/unexpected keys, and every official name we know
    from the release code is present with its shape."""
    target = matchdetr.build(preset, num_classes=80).state_dict()
    official = to_detrex(target)
    for key, shape in {**DETREX_DINO_4SCALE, **extra}.items():
        assert tuple(official[key].shape) == shape, key
    assert not any("num_batches_tracked" in k for k in official)  # FrozenBN, as released
    fam = dino_family(family)
    assert fam.config(official, None, "x").preset == preset
    converted = map_state_dict(fam, official, target, "x")
    assert set(converted) == set(target)
    q, k, v = official["transformer.decoder.layers.4.attentions.0.attn.in_proj_weight"].split(256)
    assert converted["decoder.layers.4.self_attn.k_proj.weight"] is k or torch.equal(converted["decoder.layers.4.self_attn.k_proj.weight"], k)


def test_five_scale_is_detected():
    official = to_detrex(matchdetr.build("dino-5scale-r50", num_classes=80).state_dict())
    assert tuple(official["neck.convs.0.conv.weight"].shape) == (256, 256, 1, 1)  # res2 in the 5-scale model
    assert tuple(official["transformer.level_embeds"].shape) == (5, 256)
    assert dino_family("dino").config(official, None, "x").preset == "dino-5scale-r50"


def _inputs():
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(2, 3, 64, 96, generator=g)
    pad = torch.zeros(2, 64, 96, dtype=torch.bool)
    pad[1, 48:, :] = True
    pad[1, :, 64:] = True
    return pixels * ~pad[:, None], pad


# The forward check runs once (Stable-DINO is DINO plus the fusion layer): the CPU time is the forward pass.
@pytest.mark.parametrize("family,preset,forward", [("dino", "dino-tiny", False), ("stable-dino", "stable-dino-tiny", True)])
def test_tiny_detrex_checkpoint_converts_and_runs_identically(tmp_path, family, preset, forward):
    torch.manual_seed(0)
    ref = tiny(preset, 7, transformer__num_queries=30).eval()  # placed by hand, here
    ref.load_state_dict(randomized(ref.state_dict()))
    official = to_detrex(ref.state_dict())
    official["label_enc.weight"] = torch.randn(7, official["label_enc.weight"].shape[1])
    official["criterion.empty_weight"] = torch.ones(8)  # a loss buffer: ignored on purpose
    src = tmp_path / "official.pth"
    torch.save({"model": official, "iteration": 89999}, src)  # the detectron2 checkpointer's layout
    out = tmp_path / "converted.safetensors"
    assert main(["convert", "official", "--family", family, "--preset", preset, *resnet_sets(preset), str(src), str(out)]) == 0
    got = matchdetr.load(out)
    state = got.state_dict()
    # representative tensors, checked directly against the official names
    d = state["decoder.layers.0.self_attn.q_proj.weight"].shape[0]
    fused = official["transformer.decoder.layers.1.attentions.0.attn.in_proj_bias"]
    assert torch.equal(state["decoder.layers.1.self_attn.v_proj.bias"], fused[2 * d:])
    assert torch.equal(state["backbone.body.layer2.0.downsample.1.running_var"], official["backbone.res3.0.shortcut.norm.running_var"])
    assert torch.equal(state["backbone.body.bn1.weight"], official["backbone.stem.conv1.norm.weight"])
    assert torch.equal(state["neck.extra.0.1.weight"], official["neck.extra_convs.0.norm.weight"])
    assert torch.equal(state["encoder.layers.1.ffn.linear2.weight"], official["transformer.encoder.layers.1.ffns.0.layers.1.weight"])
    assert torch.equal(state["decoder.layers.2.norm2.bias"], official["transformer.decoder.layers.2.norms.1.bias"])
    assert torch.equal(state["head.bbox_embed.3.layers.2.bias"], official["bbox_embed.3.layers.2.bias"])
    assert torch.equal(state["queries.label_enc.weight"][:7], official["label_enc.weight"])
    assert not state["queries.label_enc.weight"][7].any()
    if family == "stable-dino":
        assert torch.equal(state["fusion.fuse.proj.weight"], official["transformer.encoder.fusion_layer.0.weight"])
    assert got.label_map.names[:2] == ["class_0", "class_1"] and got.config.model.transformer.num_queries == 30
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in state.items() if k != "queries.label_enc.weight")
    # no test-time NMS unless asked for: the releases' evaluation never runs it (the stable presets do)
    assert got.config.model.postprocess.nms_iou is None
    if not forward:
        return
    with_nms = tmp_path / "with_nms.safetensors"
    assert main(["convert", "official", "--family", family, "--preset", preset, "--nms", *resnet_sets(preset), str(src),
                 str(with_nms)]) == 0
    assert matchdetr.load(with_nms).config.model.postprocess.nms_iou == 0.8
    pixels, pad = _inputs()
    with torch.no_grad():
        want, have = ref(pixels, pad), got(pixels, pad)
    assert torch.equal(have.logits, want.logits) and torch.equal(have.boxes, want.boxes)


def test_errors_name_the_keys(tmp_path):
    target = tiny("stable-dino-tiny", 3).state_dict()
    official = to_detrex(target)
    fam = dino_family("dino")
    with pytest.raises(ConversionError, match="use --family stable-dino"):
        map_state_dict(fam, official, tiny("dino-tiny", 3).state_dict(), "x")
    broken = dict(official)
    broken["transformer.decoder.class_embed.0.bias"] = broken["class_embed.0.bias"] + 1
    with pytest.raises(ConversionError, match="differs from class_embed.0.bias"):
        map_state_dict(dino_family("stable-dino"), broken, target, "x")
    broken = {k: v for k, v in official.items() if k != "transformer.decoder.norm.weight"}
    broken["transformer.something_new"] = torch.zeros(1)
    with pytest.raises(ConversionError, match=r"transformer.something_new.*decoder.norm.weight"):
        map_state_dict(dino_family("stable-dino"), broken, target, "x")
    with pytest.raises(ConversionError, match="not a Stable-DINO"):
        map_state_dict(dino_family("stable-dino"), to_detrex(tiny("dino-tiny", 3).state_dict()), target, "x")


def test_unsafe_and_wrong_files_are_one_line_errors(tmp_path, capsys):
    evil = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "cfg": ConversionError("pickled object")}, evil)
    with pytest.raises(ConversionError, match="refused by torch.load\\(weights_only=True\\)"):
        read_checkpoint(evil)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ConversionError, match="cannot read"):
        read_checkpoint(tmp_path / "junk.pth")
    assert main(["convert", "official", "--family", "dino", str(evil), str(tmp_path / "o.safetensors")]) != 0
    err = capsys.readouterr().err.strip()
    assert "weights_only" in err and "\n" not in err
    # a bad command line is one line and exit code 2, returned by main like every other expected failure
    assert main(["convert", "official", "--family", "detr", str(evil), str(tmp_path / "o.safetensors")]) == 2
    assert "invalid choice" in capsys.readouterr().err
    state = tmp_path / "plain.pth"
    torch.save({"backbone.0.body.conv1.weight": torch.zeros(1)}, state)
    assert main(["convert", "official", "--family", "dino", str(state), str(tmp_path / "o.safetensors")]) != 0
    assert "DETR-style" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ SAM-DETR names
def to_sam_detr(ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict -> an official SAM-DETR (FastDETR) state dict (hand-written inverse, for the tests)."""
    dec = {"self_attn.q_content": "sa_qcontent_proj", "self_attn.q_pos": "sa_qpos_proj",
           "self_attn.k_content": "sa_kcontent_proj", "self_attn.k_pos": "sa_kpos_proj", "self_attn.v_proj": "sa_v_proj",
           "self_attn.out_proj": "self_attn.out_proj", "cross_attn.q_content": "ca_qcontent_proj",
           "cross_attn.k_content": "ca_kcontent_proj", "cross_attn.v_proj": "ca_v_proj",
           "cross_attn.q_pos": "ca_qpos_sine_proj", "cross_attn.k_pos": "ca_kpos_sine_proj",
           "cross_attn.out_proj": "cross_attn.out_proj", "aligner.point_conv": "point1", "aligner.point_mlp": "point2",
           "aligner.reweight_content": "attn1", "aligner.reweight_pos": "attn2", "norm1": "norm1", "norm2": "norm2",
           "ffn.norm": "norm3", "ffn.linear1": "linear1", "ffn.linear2": "linear2"}
    enc = {"norm": "norm1", "ffn.norm": "norm2", "ffn.linear1": "linear1", "ffn.linear2": "linear2"}
    out: dict[str, torch.Tensor] = {}
    for key, value in ours.items():
        m = re.fullmatch(r"(encoder|decoder)\.layers\.(\d+)\.(.+)\.(weight|bias)", key)
        if key.startswith("backbone.body."):
            out["backbone.0.body." + key.removeprefix("backbone.body.")] = value
        elif key.startswith("neck.proj."):
            out["input_proj." + key.removeprefix("neck.proj.")] = value
        elif key == "neck.level_embed":
            out["transformer.level_embed"] = value
        elif key == "queries.query_embed.weight":
            out["query_embed.weight"] = value
        elif key.startswith("head."):
            out[key.removeprefix("head.")] = value
            if key.startswith("head.bbox_embed."):
                out["transformer.decoder." + key.removeprefix("head.")] = value
        elif m and m[1] == "encoder" and m[3] in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
            if m[3] == "self_attn.q_proj":  # nn.MultiheadAttention's packed [W_q; W_k; W_v]
                qkv = [ours[key.replace("q_proj", p)] for p in ("q_proj", "k_proj", "v_proj")]
                out[f"transformer.encoder.layers.{m[2]}.self_attn.in_proj_{m[4]}"] = torch.cat(qkv)
        elif m and m[1] == "encoder":
            name = enc.get(m[3], m[3])  # the deformable attention's and out_proj's names are the same
            out[f"transformer.encoder.layers.{m[2]}.{name}.{m[4]}"] = value
        elif m:
            base, _, index = m[3].rpartition(".")
            if base.endswith(("q_pos.layers", "k_pos.layers")):  # MLP layers keep their index
                name = dec[base.removesuffix(".layers")] + ".layers." + index
            elif base in dec:  # nn.Sequential members: point_conv.0, point_mlp.{0,2,4,6}
                name = dec[base] + "." + index
            else:
                name = dec[m[3]]
            out[f"transformer.decoder.layers.{m[2]}.{name}.{m[4]}"] = value
        else:
            raise AssertionError(f"test inverse has no rule for {key}")
    return out


# Official names and shapes of SAM-DETR-R50 (12-epoch: GroupNorm in input_proj), 91 classes, 300 queries.
SAM_DETR_R50 = {
    "backbone.0.body.conv1.weight": (64, 3, 7, 7),
    "backbone.0.body.layer1.0.downsample.0.weight": (256, 64, 1, 1),
    "backbone.0.body.layer4.2.bn3.running_var": (2048,),
    "input_proj.0.0.weight": (256, 2048, 1, 1),
    "input_proj.0.1.weight": (256,),
    "query_embed.weight": (300, 4),
    "transformer.encoder.layers.0.self_attn.in_proj_weight": (768, 256),
    "transformer.encoder.layers.0.self_attn.in_proj_bias": (768,),
    "transformer.encoder.layers.0.self_attn.out_proj.weight": (256, 256),
    "transformer.encoder.layers.5.linear1.weight": (2048, 256),
    "transformer.encoder.layers.5.norm2.bias": (256,),
    "transformer.decoder.layers.0.sa_qcontent_proj.weight": (256, 256),
    "transformer.decoder.layers.0.sa_kpos_proj.bias": (256,),
    "transformer.decoder.layers.0.sa_v_proj.weight": (256, 256),
    "transformer.decoder.layers.0.self_attn.out_proj.weight": (256, 256),
    "transformer.decoder.layers.0.ca_qpos_sine_proj.layers.1.weight": (256, 256),
    "transformer.decoder.layers.0.ca_kcontent_proj.weight": (256, 256),
    "transformer.decoder.layers.0.cross_attn.out_proj.weight": (256, 256),
    "transformer.decoder.layers.0.point1.0.weight": (64, 256, 1, 1),
    "transformer.decoder.layers.0.point2.0.weight": (256, 64 * 7 * 7),
    "transformer.decoder.layers.0.point2.6.weight": (16, 512),
    "transformer.decoder.layers.0.attn1.weight": (2048, 256),
    "transformer.decoder.layers.3.attn2.bias": (2048,),
    "transformer.decoder.layers.5.norm3.weight": (256,),
    "class_embed.5.weight": (91, 256),
    "bbox_embed.5.layers.2.weight": (4, 256),
    "transformer.decoder.bbox_embed.0.layers.0.weight": (256, 256),
}
SAM_DETR_PP_SMCA = {
    "transformer.level_embed": (3, 256),
    "input_proj.0.0.weight": (256, 512, 1, 1),
    "input_proj.2.1.weight": (256,),
    "transformer.encoder.layers.0.self_attn.sampling_offsets.weight": (8 * 3 * 4 * 2, 256),
    "transformer.encoder.layers.0.self_attn.attention_weights.weight": (8 * 3 * 4, 256),
    "transformer.encoder.layers.0.linear1.weight": (1024, 256),
    "transformer.decoder.layers.0.point2.6.weight": (32, 512),
    "transformer.decoder.layers.0.linear1.weight": (2048, 256),
}


@pytest.mark.parametrize("preset,overrides,expected", [
    ("sam-detr-r50", {"arch__group_norm": True}, SAM_DETR_R50),
    ("sam-detr-plus-plus-smca-r50", {}, SAM_DETR_PP_SMCA),
])
def test_full_size_sam_detr_names_and_shapes(preset, overrides, expected):
    from matchdetr.interop.official_sam_detr import family

    target = matchdetr.build(preset, num_classes=91, **overrides).state_dict()
    official = to_sam_detr(target)
    for key, shape in expected.items():
        assert tuple(official[key].shape) == shape, key
    fam = family("sam-detr")
    cfg = fam.config(official, None, "SAM-DETR-R50.pth")
    assert cfg.preset == preset and cfg.model.arch.group_norm == bool(overrides)
    converted = map_state_dict(fam, official, target, "x")
    assert set(converted) == set(target)
    q, k, v = official.get("transformer.encoder.layers.2.self_attn.in_proj_bias", torch.zeros(768)).split(256)
    if not cfg.model.arch.multiscale:
        assert torch.equal(converted["encoder.layers.2.self_attn.v_proj.bias"], v)


def test_sam_detr_dc5_from_the_file_name():
    from matchdetr.interop.official_sam_detr import config

    official = to_sam_detr(tiny("sam-detr-smca-tiny", 91).state_dict())
    assert config(official, "sam-detr-smca-tiny", "r50_dc5_smca_e50/checkpoint.pth").model.backbone.dilation
    assert config(official, None, "SAM-DETR-R50-DC5-SMCA.pth").model.backbone.dilation
    assert not config(official, None, "checkpoint.pth").model.backbone.dilation


def test_tiny_sam_detr_checkpoint_converts_and_runs_identically(tmp_path, capsys):
    torch.manual_seed(0)
    ref = tiny("sam-detr-smca-tiny", 91, transformer__num_queries=30).eval()
    ref.load_state_dict(randomized(ref.state_dict(), seed=3))
    official = to_sam_detr(ref.state_dict())
    src = tmp_path / "checkpoint.pth"
    # the release's main.py layout (optimizer and scheduler state omitted): its argparse.Namespace is allowed
    torch.save({"model": official, "epoch": 49, "args": argparse.Namespace(smca=True, lr_drop=40)}, src)
    out = tmp_path / "converted.safetensors"
    assert main(["convert", "official", "--family", "sam-detr", "--preset", "sam-detr-smca-tiny", *resnet_sets("sam-detr-smca-tiny"), str(src),
                 str(out)]) == 0
    got = matchdetr.load(out)
    state = got.state_dict()
    d = state["encoder.layers.0.self_attn.q_proj.weight"].shape[0]
    fused = official["transformer.encoder.layers.1.self_attn.in_proj_weight"]
    assert torch.equal(state["encoder.layers.1.self_attn.k_proj.weight"], fused[d:2 * d])
    assert torch.equal(state["decoder.layers.2.aligner.point_mlp.6.weight"], official["transformer.decoder.layers.2.point2.6.weight"])
    assert torch.equal(state["decoder.layers.0.aligner.reweight_pos.bias"], official["transformer.decoder.layers.0.attn2.bias"])
    assert torch.equal(state["decoder.layers.1.cross_attn.k_pos.layers.0.weight"],
                      official["transformer.decoder.layers.1.ca_kpos_sine_proj.layers.0.weight"])
    assert torch.equal(state["decoder.layers.2.ffn.norm.weight"], official["transformer.decoder.layers.2.norm3.weight"])
    assert torch.equal(state["queries.query_embed.weight"], official["query_embed.weight"])
    assert torch.equal(state["backbone.body.layer3.0.downsample.1.running_mean"], official["backbone.0.body.layer3.0.downsample.1.running_mean"])
    assert got.label_map.category_ids == list(range(91)) and got.label_map.names[1] == "person"
    assert got.label_map.names[12] == "N/A"  # an id COCO never used
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in state.items())
    pixels, pad = _inputs()
    with torch.no_grad():
        want, have = ref(pixels, pad), got(pixels, pad)
    assert torch.equal(have.logits, want.logits) and torch.equal(have.boxes, want.boxes)
    # a detrex checkpoint given as sam-detr (and the reverse) is a one-line error that names the right family
    torch.save({"model": to_detrex(tiny("dino-tiny", 3).state_dict())}, tmp_path / "dino.pth")
    assert main(["convert", "official", "--family", "sam-detr", str(tmp_path / "dino.pth"), str(out)]) == 2
    assert "--family dino" in capsys.readouterr().err
    assert main(["convert", "official", "--family", "dino", str(src), str(out)]) == 2
    assert "DETR-style" in capsys.readouterr().err
