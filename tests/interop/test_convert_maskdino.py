"""`matchdetr convert official --family maskdino | stable-maskdino`: the Mask-DINO release's checkpoints.

The official state dicts are written by a hand-made inverse of our names (independent of the converter's
rules), with every key the release's ``state_dict()`` holds: the tied copies of the box branch and of the
decoder norm, and the criterion's buffer. The names and shapes below were read off the release's model built
from ``maskdino_R50_bs16_50ep_3s.yaml`` (IDEA-Research/MaskDINO, 716 keys, 43,816,436 parameters).
"""

from __future__ import annotations

import json

import re

import pytest
import torch

import matchdetr
from matchdetr.cli import main
from matchdetr.interop.hf_deformable_detr import ConversionError
from matchdetr.interop.official import map_state_dict
from matchdetr.interop.official_maskdino import family
from official_inverse import DETECTRON2_RESNET, is_packed, packed_self_attention, renamed

P, D = "sem_seg_head.pixel_decoder.", "sem_seg_head.predictor."


def to_release(ours: dict[str, torch.Tensor], heads: int = 8) -> dict[str, torch.Tensor]:
    """Our Mask-DINO state dict -> the release's (hand-written inverse, for the tests).

    The release's encoder reads its levels coarsest first (extra levels, then res5, res4, res3), ours finest
    first: its input_proj 0-2 are res5-res3, its level embedding and the level axis of its encoder's
    sampling_offsets / attention_weights are ours reversed."""
    levels = ours["neck.neck.level_embed"].shape[0]
    backbone_levels = sum(1 for k in ours if re.fullmatch(r"neck\.neck\.proj\.\d+\.0\.weight", k))

    def flip(v: torch.Tensor) -> torch.Tensor:
        return v.reshape(heads, levels, -1, *v.shape[1:]).flip(1).reshape(v.shape)

    subs = [*DETECTRON2_RESNET,  # (our regex, release replacement), first match wins
        (r"neck\.neck\.proj\.(\d+)\.", lambda m: f"{P}input_proj.{backbone_levels - 1 - int(m[1])}."),
        (r"neck\.neck\.extra\.(\d+)\.", lambda m: f"{P}input_proj.{backbone_levels + int(m[1])}."),
        (r"neck\.lateral\.0\.", P + "adapter_1."), (r"neck\.lateral\.1\.", P + "adapter_1.norm."),
        (r"fusion\.output\.0\.", P + "layer_1."), (r"fusion\.output\.1\.", P + "layer_1.norm."),
        (r"fusion\.embed\.", P + "mask_features."),
        (r"encoder\.layers\.(\d+)\.self_attn\.", P + r"transformer.encoder.layers.\1.self_attn."),
        (r"encoder\.layers\.(\d+)\.norm\.", P + r"transformer.encoder.layers.\1.norm1."),
        (r"encoder\.layers\.(\d+)\.ffn\.norm\.", P + r"transformer.encoder.layers.\1.norm2."),
        (r"encoder\.layers\.(\d+)\.ffn\.linear(\d)\.", P + r"transformer.encoder.layers.\1.linear\2."),
        (r"decoder\.layers\.(\d+)\.self_attn\.out_proj\.", D + r"decoder.layers.\1.self_attn.out_proj."),
        (r"decoder\.layers\.(\d+)\.cross_attn\.", D + r"decoder.layers.\1.cross_attn."),
        (r"decoder\.layers\.(\d+)\.norm1\.", D + r"decoder.layers.\1.norm2."),  # after the self-attention
        (r"decoder\.layers\.(\d+)\.norm2\.", D + r"decoder.layers.\1.norm1."),  # after the cross-attention
        (r"decoder\.layers\.(\d+)\.ffn\.norm\.", D + r"decoder.layers.\1.norm3."),
        (r"decoder\.layers\.(\d+)\.ffn\.linear(\d)\.", D + r"decoder.layers.\1.linear\2."),
        (r"decoder\.query_pos\.ref_point_head\.", D + "decoder.ref_point_head."),
        (r"decoder\.norm\.", D + "decoder_norm."),
        (r"queries\.base\.", D), (r"head\.detection\.class_embed\.0\.", D + "class_embed."),
        (r"head\.detection\.bbox_embed\.0\.", D + "_bbox_embed."), (r"head\.mask_embed\.", D + "mask_embed."),
    ]
    out: dict[str, torch.Tensor] = {}
    for key, value in ours.items():
        packed = packed_self_attention(ours, key)
        if packed:
            out[f"{D}decoder.layers.{packed[0]}.self_attn.in_proj_{packed[1]}"] = packed[2]
            continue
        if is_packed(key) or key.startswith("head.norm."):
            continue  # head.norm is the release's decoder_norm (our models set them equal)
        if key == "queries.label_enc.weight":
            out[D + "label_enc.weight"] = value[:-1]  # nn.Embedding(num_classes, d): no padding row
            continue
        if key == "neck.neck.level_embed":
            out[P + "transformer.level_embed"] = value.flip(0)
            continue
        if re.fullmatch(r"encoder\.layers\.\d+\.self_attn\.(sampling_offsets|attention_weights)\.\w+", key):
            value = flip(value)
        out[renamed(key, subs)] = value
    # what the release's state_dict() holds besides: one decoder norm under two names (maskdino_decoder.py:144-148),
    # the shared box branch once per decoder layer and again in the decoder (:156-161), the criterion's buffer
    for k in [k for k in out if k.startswith(D + "decoder_norm.")]:
        out[k.replace("decoder_norm.", "decoder.norm.")] = out[k]
    dec_layers = len({k.split(".")[4] for k in out if k.startswith(D + "decoder.layers.")})
    for k in [k for k in out if k.startswith(D + "_bbox_embed.")]:
        for i in range(dec_layers):
            out[k.replace("_bbox_embed.", f"bbox_embed.{i}.")] = out[k]
            out[k.replace("_bbox_embed.", f"decoder.bbox_embed.{i}.")] = out[k]
    out["criterion.empty_weight"] = torch.ones(ours["head.detection.class_embed.0.bias"].shape[0] + 1)
    return out


# Official names and shapes of the released MaskDINO-R50 3-scale model (80 classes), from the release's code.
RELEASE_R50_3S = {
    "backbone.stem.conv1.weight": (64, 3, 7, 7),
    "backbone.res2.0.shortcut.norm.running_var": (256,),
    "backbone.res5.2.conv3.weight": (2048, 512, 1, 1),
    P + "input_proj.0.0.weight": (256, 2048, 1, 1),
    P + "input_proj.1.0.weight": (256, 1024, 1, 1),
    P + "input_proj.2.0.weight": (256, 512, 1, 1),
    P + "input_proj.2.1.bias": (256,),
    P + "transformer.level_embed": (3, 256),
    P + "transformer.encoder.layers.0.self_attn.sampling_offsets.weight": (192, 256),
    P + "transformer.encoder.layers.5.self_attn.attention_weights.bias": (96,),
    P + "transformer.encoder.layers.0.linear1.weight": (1024, 256),
    P + "transformer.encoder.layers.3.norm2.weight": (256,),
    P + "mask_features.weight": (256, 256, 1, 1),
    P + "adapter_1.weight": (256, 256, 1, 1),
    P + "adapter_1.norm.bias": (256,),
    P + "layer_1.weight": (256, 256, 3, 3),
    P + "layer_1.norm.weight": (256,),
    D + "enc_output.weight": (256, 256),
    D + "enc_output_norm.bias": (256,),
    D + "class_embed.weight": (80, 256),
    D + "label_enc.weight": (80, 256),
    D + "mask_embed.layers.2.weight": (256, 256),
    D + "decoder_norm.weight": (256,),
    D + "decoder.norm.bias": (256,),
    D + "decoder.layers.0.self_attn.in_proj_weight": (768, 256),
    D + "decoder.layers.8.self_attn.out_proj.bias": (256,),
    D + "decoder.layers.4.cross_attn.sampling_offsets.weight": (192, 256),
    D + "decoder.layers.0.norm3.weight": (256,),
    D + "decoder.layers.8.linear1.weight": (2048, 256),
    D + "decoder.ref_point_head.layers.0.weight": (256, 512),
    D + "_bbox_embed.layers.2.weight": (4, 256),
    D + "bbox_embed.8.layers.0.weight": (256, 256),
    D + "decoder.bbox_embed.0.layers.2.bias": (4,),
    "criterion.empty_weight": (81,),
}
RELEASE_KEYS, RELEASE_PARAMS = 716, 43_816_436


@pytest.fixture(scope="module")
def r50_3s() -> dict[str, torch.Tensor]:
    return matchdetr.build("maskdino-r50", num_classes=80, **{"backbone.weights": None}).state_dict()


def test_full_size_release_names_and_shapes(r50_3s):
    """The release's 3-scale R50 layout maps with no key left over on either side; every official name we read
    from the release is present with its shape; the preset is inferred."""
    official = to_release(r50_3s)
    for key, shape in RELEASE_R50_3S.items():
        assert tuple(official[key].shape) == shape, key
    assert len(official) == RELEASE_KEYS
    # unique tensors of the release: its parameters (FrozenBN holds buffers) = ours less the 768 we add
    ours_params = sum(v.numel() for k, v in r50_3s.items() if "running_" not in k and not k.startswith("backbone.body.bn")
                      and not re.search(r"\.bn\d\.|downsample\.1\.", k))
    assert ours_params == RELEASE_PARAMS + 768
    fam = family("maskdino")
    cfg = fam.config(official, None, "x")
    assert cfg.preset == "maskdino-r50" and cfg.model.transformer.num_levels == 3 and cfg.model.num_classes == 80
    converted = map_state_dict(fam, official, r50_3s, "x")
    assert set(converted) == set(r50_3s)
    for k, v in converted.items():
        rows = slice(-1) if k == "queries.label_enc.weight" else slice(None)  # our padding row: zeros
        assert torch.equal(v[rows], r50_3s[k][rows]), k


@pytest.mark.parametrize("levels", [4, 5])
def test_preset_inference_four_and_five_scales(levels):
    """4 and 5 scales: res3-res5 plus one or two 3x3 stride-2 levels (TOTAL_NUM_FEATURE_LEVELS 4 / 5)."""
    ours = matchdetr.build("maskdino-r50", num_classes=80, transformer__num_levels=levels,
                           **{"backbone.weights": None}).state_dict()
    official = to_release(ours)
    assert tuple(official[f"{P}input_proj.3.0.weight"].shape) == (256, 2048, 3, 3)  # the first extra level: from res5
    assert tuple(official[P + "transformer.level_embed"].shape) == (levels, 256)
    fam = family("stable-maskdino")
    cfg = fam.config(official, None, "x")
    assert cfg.preset == "stable-maskdino-r50" and cfg.model.transformer.num_levels == levels
    assert set(map_state_dict(fam, official, ours, "x")) == set(ours)


# A tiny Mask-DINO with the release's layout: ResNet-18 at quarter width (C2 for the pixel embedding, C3-C5 for the
# encoder), 8 heads as the release, 4 levels (one extra) so the level reversal covers every case.
TINY = {"backbone": {"kind": "resnet", "depth": 18, "width": 16, "norm": "frozen_bn", "return_levels": [2, 3, 4, 5]},
        "transformer.num_levels": 4, "transformer.hidden_dim": 32,
        "transformer.dim_feedforward": 64, "transformer.enc_layers": 2, "transformer.dec_layers": 2,
        "transformer.num_queries": 12, "arch.mask_dim": 16, "arch.encoder_ffn_dim": 48}
TINY_SETS = [x for k, v in TINY.items() for x in ("--set", f"model.{k}={json.dumps(v)}")]


def _tiny(preset: str = "maskdino-tiny") -> matchdetr.Model:
    torch.manual_seed(0)
    det = matchdetr.build(preset, num_classes=7, **TINY)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # every tensor random, so a misplaced one shows in the outputs
        for name, p in det.state_dict().items():
            if p.is_floating_point():
                p.copy_(torch.rand(p.shape, generator=g) + 0.5 if "running_var" in name else
                        torch.randn(p.shape, generator=g) * (0.3 if "sampling_offsets" in name else 0.1))
        det.head.norm.load_state_dict(det.decoder.norm.state_dict())  # one LayerNorm in the release
        det.queries.label_enc.weight[-1] = 0
    return det.eval()


def test_tiny_release_checkpoint_converts_and_runs_identically(tmp_path):
    ref = _tiny()
    official = to_release(ref.state_dict())
    src = tmp_path / "maskdino.pth"
    torch.save({"model": official, "iteration": 368749}, src)  # the detectron2 checkpointer's layout
    out = tmp_path / "converted.safetensors"
    assert main(["convert", "official", "--family", "maskdino", "--preset", "maskdino-tiny", *TINY_SETS, str(src),
                 str(out)]) == 0
    got = matchdetr.load(out)
    state = got.state_dict()
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in state.items())
    # representative tensors against the official names
    assert torch.equal(state["neck.neck.proj.0.0.weight"], official[P + "input_proj.2.0.weight"])  # res3
    assert torch.equal(state["neck.neck.extra.0.1.bias"], official[P + "input_proj.3.1.bias"])
    assert torch.equal(state["neck.neck.level_embed"][0], official[P + "transformer.level_embed"][3])
    assert torch.equal(state["decoder.layers.1.norm1.weight"], official[D + "decoder.layers.1.norm2.weight"])
    assert torch.equal(state["head.norm.bias"], official[D + "decoder_norm.bias"])
    assert torch.equal(state["decoder.layers.0.cross_attn.sampling_offsets.weight"],
                       official[D + "decoder.layers.0.cross_attn.sampling_offsets.weight"])  # decoder: unchanged
    assert not state["queries.label_enc.weight"][7].any()
    images = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    pad = torch.zeros(2, 96, 128, dtype=torch.bool)
    pad[1, 64:], pad[1, :, 96:] = True, True
    with torch.no_grad():
        want, have = ref(images * ~pad[:, None], pad), got(images * ~pad[:, None], pad)
    assert torch.equal(have.logits, want.logits) and torch.equal(have.boxes, want.boxes)
    assert torch.equal(have.masks, want.masks)


def test_errors_name_the_keys(tmp_path, capsys):
    ref = _tiny()
    target, official = ref.state_dict(), to_release(ref.state_dict())
    fam = family("maskdino")
    fam.config(official, "maskdino-tiny", "x")
    broken = {k: v for k, v in official.items() if k != D + "mask_embed.layers.1.bias"}
    broken[D + "query_feat.weight"] = torch.zeros(12, 32)
    with pytest.raises(ConversionError, match=r"1 official keys have no matchdetr name \[.*query_feat.weight\].*"
                                              r"1 matchdetr keys have no source \[head.mask_embed.layers.1.bias\].*LEARN_TGT"):
        map_state_dict(fam, broken, target, "x")
    broken = dict(official)
    broken[D + "bbox_embed.1.layers.0.bias"] = broken[D + "bbox_embed.1.layers.0.bias"] + 1
    with pytest.raises(ConversionError, match=r"bbox_embed.1.layers.0.bias differs from .*_bbox_embed.layers.0.bias"):
        map_state_dict(fam, broken, target, "x")
    broken = dict(official)
    broken[D + "decoder.norm.weight"] = broken[D + "decoder.norm.weight"] * 2
    with pytest.raises(ConversionError, match=r"decoder.norm.weight differs from .*decoder_norm.weight"):
        map_state_dict(fam, broken, target, "x")
    with pytest.raises(ConversionError, match="not a stable-maskdino preset"):
        family("stable-maskdino").config(official, "maskdino-tiny", "x")
    # FEATURE_ORDER low2high (the *_2048 models): the encoder's input_proj read res3 first
    low2high = dict(official)
    for i, j in ((0, 2), (2, 0)):
        for part in ("0.weight", "0.bias", "1.weight", "1.bias"):
            low2high[f"{P}input_proj.{i}.{part}"] = official[f"{P}input_proj.{j}.{part}"]
    with pytest.raises(ConversionError, match="low2high.*mask2box"):
        fam.config(low2high, "maskdino-tiny", "x")
    # a DINO (detrex) checkpoint given as maskdino
    with pytest.raises(ConversionError, match="not a Mask-DINO checkpoint"):
        fam.config({"class_embed.0.weight": torch.zeros(7, 32)}, None, "x")


# A micro Swin in the release's D2SwinTransformer layout (detectron2's Swin, Mask2Former's names: res2-res5 through
# norm0-norm3, each block's relative_position_index buffer stored)
MICRO_SWIN = {"kind": "swin", "embed_dim": 16, "depths": [2, 2, 2, 2], "num_heads": [1, 2, 2, 4], "window_size": 7,
              "return_levels": [2, 3, 4, 5]}


def test_swin_release_checkpoint_converts_and_runs_identically(tmp_path):
    from test_convert_swin import microsoft_index

    torch.manual_seed(0)
    det = matchdetr.build("maskdino-tiny", num_classes=7, **{**TINY, "backbone": MICRO_SWIN})
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in det.state_dict().values():
            if p.is_floating_point():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
        det.head.norm.load_state_dict(det.decoder.norm.state_dict())
        det.queries.label_enc.weight[-1] = 0
    ref = det.eval()
    ours = ref.state_dict()
    official = to_release({k: v for k, v in ours.items() if not k.startswith("backbone.")})
    for key, value in ours.items():
        if key.startswith("backbone."):
            official[key] = value
            if key.endswith("relative_position_bias_table"):
                official[key.replace("bias_table", "index")] = microsoft_index(7)
    assert {"backbone.norm0.weight", "backbone.layers.3.blocks.1.attn.relative_position_index"} <= set(official)
    src = tmp_path / "maskdino_swin.pth"
    torch.save({"model": official}, src)
    out = tmp_path / "converted.safetensors"
    sets = [x for k, v in TINY.items() if k != "backbone" for x in ("--set", f"model.{k}={json.dumps(v)}")]
    assert main(["convert", "official", "--family", "maskdino", "--preset", "maskdino-tiny", *sets, str(src),
                 str(out)]) == 0
    got = matchdetr.load(out)
    assert got.config.model.backbone.kind == "swin" and got.config.model.backbone.embed_dim == 16
    assert all(torch.equal(v, ours[k]) for k, v in got.state_dict().items())
    images = torch.randn(2, 3, 96, 136, generator=torch.Generator().manual_seed(1))
    pad = torch.zeros(2, 96, 136, dtype=torch.bool)
    pad[1, 64:], pad[1, :, 100:] = True, True
    with torch.no_grad():
        want, have = ref(images * ~pad[:, None], pad), got(images * ~pad[:, None], pad)
    assert torch.equal(have.logits, want.logits) and torch.equal(have.masks, want.masks)
    # without --preset a Mask-DINO Swin checkpoint is read as maskdino-swin-l with its own backbone
    cfg = family("maskdino").config(official, None, "x")
    assert cfg.preset == "maskdino-swin-l" and cfg.model.backbone.embed_dim == 16
    assert cfg.model.backbone.drop_path_rate == 0.3
