"""Import HF transformers' ``DeformableDetrForObjectDetection`` weights (``save_pretrained`` directories).

Reads ``config.json`` and the safetensors weights (no transformers import: it is a test-time dependency
only), builds the equivalent matchdetr config and renames every tensor. HF's own ResNet backbone
(``use_timm_backbone=False``) is renamed to torchvision's ResNet names. Any key that cannot be mapped is a
one-line error listing the keys.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from .. import presets
from ..config import Config
from ..data.coco import LabelMap
from ..io.files import read_json
from ..models.backbone import ResNetConfig
from .errors import ConversionError  # noqa: F401  (raised here, and imported from here by older code)

_RESNETS = {("basic", (2, 2, 2, 2)): "resnet18", ("basic", (3, 4, 6, 3)): "resnet34",
            ("bottleneck", (3, 4, 6, 3)): "resnet50", ("bottleneck", (3, 4, 23, 3)): "resnet101"}


# The architecture keys of config.json, with the default transformers' DeformableDetrConfig.__init__ gives a key
# the file lacks: a config missing one is read as HF reads it (the weights then have to fit, or the key mapping
# below refuses them in one line).
_HF_DEFAULTS = {"d_model": 256, "encoder_layers": 6, "decoder_layers": 6, "encoder_attention_heads": 8,
                "decoder_attention_heads": 8, "encoder_ffn_dim": 1024, "decoder_ffn_dim": 1024, "num_queries": 300,
                "num_feature_levels": 4, "encoder_n_points": 4, "decoder_n_points": 4}


def _read_source(src: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    cfg_path = src / "config.json"
    if not cfg_path.exists():
        raise ConversionError(f"{src}: no config.json (expected a save_pretrained directory)")
    hf = read_json(cfg_path, "an HF config.json")
    if not isinstance(hf, dict):
        raise ConversionError(f"{cfg_path}: must be a JSON object (a DeformableDetrConfig), got {type(hf).__name__}")
    files = sorted(src.glob("*.safetensors"))
    if not files:
        raise ConversionError(f"{src}: no *.safetensors weights (save with safe_serialization=True)")
    state: dict[str, Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    return hf, state


def config_from_hf(hf: dict[str, Any], where: str = "config.json") -> tuple[Config, LabelMap]:
    """The matchdetr Config and label map equivalent to an HF ``DeformableDetrConfig`` dict."""
    if hf.get("model_type") != "deformable_detr":
        raise ConversionError(f"{where}: model_type is {hf.get('model_type')!r}, expected 'deformable_detr'")
    backbone, width, levels = _backbone_from_hf(hf, where)
    for key, ours in (("activation_function", "relu"), ("position_embedding_type", "sine")):
        if hf.get(key, ours) != ours:
            raise ConversionError(f"{where}: {key}={hf[key]!r} is not supported (matchdetr uses {ours!r})")
    arch = {key: _positive_int(hf, key, where) for key in _HF_DEFAULTS}
    for a, b in (("encoder_attention_heads", "decoder_attention_heads"), ("encoder_ffn_dim", "decoder_ffn_dim")):
        if arch[a] != arch[b]:
            raise ConversionError(f"{where}: {a}={arch[a]} differs from {b}={arch[b]}; matchdetr uses one value")
    refine, two_stage = bool(hf.get("with_box_refine")), bool(hf.get("two_stage"))
    name = "deformable-detr-r50" + ("-two-stage" if two_stage else "-refine" if refine else "")
    cfg = presets.get(name)
    m, t = cfg.model, cfg.model.transformer
    id2label = hf.get("id2label") or {}
    if not isinstance(id2label, dict):
        raise ConversionError(f"{where}: 'id2label' must be an object {{index: name}}, got {type(id2label).__name__}")
    m.num_classes = _positive_int(hf, "num_labels", where, len(id2label) or 91)
    m.backbone = ResNetConfig(depth=int(backbone.removeprefix("resnet")), width=width, return_levels=levels,
                              dilation=bool(hf.get("dilation", False)), frozen_stages=m.backbone.frozen_stages)
    t.hidden_dim, t.num_heads, t.dim_feedforward = arch["d_model"], arch["encoder_attention_heads"], arch["encoder_ffn_dim"]
    t.enc_layers, t.dec_layers, t.num_queries = arch["encoder_layers"], arch["decoder_layers"], arch["num_queries"]
    t.num_levels = arch["num_feature_levels"]
    t.enc_points, t.dec_points = arch["encoder_n_points"], arch["decoder_n_points"]
    t.dropout = float(hf.get("dropout", 0.1))
    if two_stage and hf.get("two_stage_num_proposals", t.num_queries) != t.num_queries:
        raise ConversionError(f"{where}: two_stage_num_proposals differs from num_queries")
    names = [str(id2label.get(str(i), id2label.get(i, f"class_{i}"))) for i in range(m.num_classes)]
    return cfg, LabelMap(list(range(m.num_classes)), names)


def _positive_int(hf: dict[str, Any], key: str, where: str, default: int | None = None) -> int:
    """``hf[key]`` (HF's default when absent) as an integer >= 1, or one line naming the key."""
    value = hf.get(key, _HF_DEFAULTS.get(key) if default is None else default)
    if type(value) is not int or value < 1:  # bool is not an int here; 2.0 is not a layer count
        raise ConversionError(f"{where}: {key!r} must be an integer >= 1, got {value!r}")
    return value


def _backbone_from_hf(hf: dict[str, Any], where: str) -> tuple[str, int, list[int]]:
    """(ResNet name, width, return levels) of HF's own ResNet (``backbone_config``) or of a timm ResNet
    (``use_timm_backbone``: the released SenseTime checkpoints), whose keys are torchvision's names."""
    bb = hf.get("backbone_config") or {}
    for key, value in (("backbone_config", bb), ("backbone_kwargs", hf.get("backbone_kwargs") or {})):
        if not isinstance(value, dict):
            raise ConversionError(f"{where}: {key!r} must be an object, got {type(value).__name__}")
    if hf.get("use_timm_backbone") or not bb:  # HF 5 omits the flag when backbone_config is present
        name = hf.get("backbone", "resnet50")
        if name not in {v: k for k, v in _RESNETS.items()}:
            raise ConversionError(f"{where}: timm backbone '{name}' is not one of resnet18/34/50/101")
        indices = (hf.get("backbone_kwargs") or {}).get("out_indices", [2, 3, 4] if hf.get("num_feature_levels", 4) > 1 else [4])
        return name, 64, sorted(int(i) + 1 for i in indices)
    if bb.get("model_type", "resnet") != "resnet" or bb.get("downsample_in_bottleneck"):
        raise ConversionError(f"{where}: only HF ResNet backbones with the stride on the 3x3 conv are supported")
    kind, depths = bb.get("layer_type", "bottleneck"), tuple(bb.get("depths", (3, 4, 6, 3)))
    if (kind, depths) not in _RESNETS:
        raise ConversionError(f"{where}: backbone {kind} with depths {list(depths)} is not a ResNet-18/34/50/101")
    width = int(bb.get("embedding_size", 64))
    expected = [width * 2**i * (1 if kind == "basic" else 4) for i in range(4)]
    if list(bb.get("hidden_sizes", expected)) != expected:
        raise ConversionError(f"{where}: backbone hidden_sizes {bb.get('hidden_sizes')} do not scale with embedding_size {width}")
    return _RESNETS[(kind, depths)], width, sorted(int(f.removeprefix("stage")) + 1 for f in bb.get("out_features", ["stage2", "stage3", "stage4"]))


def _rename_resnet(key: str) -> str | None:
    """HF ResNet key (below ``backbone.model.``) -> torchvision key, or None."""
    key = key.replace("embedder.embedder.convolution", "conv1").replace("embedder.embedder.normalization", "bn1")
    m = re.match(r"encoder\.stages\.(\d+)\.layers\.(\d+)\.(.*)$", key)
    if m is None:  # already torchvision/timm names (timm-backbone checkpoints)
        return key if re.match(r"^(conv1|bn1|layer[1-4])\.", key) else None
    stage, block, rest = int(m.group(1)), m.group(2), m.group(3)
    rest = re.sub(r"^shortcut\.convolution", "downsample.0", rest)
    rest = re.sub(r"^shortcut\.normalization", "downsample.1", rest)
    rest = re.sub(r"^layer\.(\d+)\.convolution", lambda x: f"conv{int(x.group(1)) + 1}", rest)
    rest = re.sub(r"^layer\.(\d+)\.normalization", lambda x: f"bn{int(x.group(1)) + 1}", rest)
    return f"layer{stage + 1}.{block}.{rest}"


_LAYER_RULES = [  # (HF sub-key regex, ours) inside encoder/decoder layers; in-memory and saved (legacy) names
    (r"^self_attn\.o_proj\.", "self_attn.out_proj."), (r"^self_attn_layer_norm\.", "{norm1}."),
    (r"^encoder_attn\.", "cross_attn."), (r"^encoder_attn_layer_norm\.", "norm2."),
    (r"^(mlp\.)?fc1\.", "ffn.linear1."), (r"^(mlp\.)?fc2\.", "ffn.linear2."), (r"^final_layer_norm\.", "ffn.norm."),
    (r"^self_attn\.", "self_attn."),
]


def rename_key(key: str, num_backbone_levels: int) -> str | None:
    """One HF key -> our key; None for keys we drop on purpose (tied duplicates), raises for unknown."""
    if key.startswith("model.decoder.bbox_embed.") or key.startswith("model.decoder.class_embed."):
        return None  # tied copies of the top-level heads (used only where the top level lacks them)
    key = key.replace("model.backbone.conv_encoder.model.", "model.backbone.model.")  # saved (legacy) form
    if key.startswith("model.backbone.model."):
        tv = _rename_resnet(key.removeprefix("model.backbone.model."))
        return None if tv is None or tv.endswith("num_batches_tracked") else f"backbone.body.{tv}"
    if key == "model.level_embed":
        return "neck.level_embed"
    m = re.match(r"model\.input_proj\.(\d+)\.(.*)$", key)
    if m:
        i = int(m.group(1))
        return f"neck.proj.{i}.{m.group(2)}" if i < num_backbone_levels else f"neck.extra.{i - num_backbone_levels}.{m.group(2)}"
    m = re.match(r"model\.(encoder|decoder)\.layers\.(\d+)\.(.*)$", key)
    if m:
        part, idx, rest = m.groups()
        for pattern, repl in _LAYER_RULES:
            if re.match(pattern, rest):
                repl = repl.replace("{norm1}", "norm" if part == "encoder" else "norm1")
                return f"{part}.layers.{idx}.{re.sub(pattern, repl, rest)}"
        return ""
    if key == "model.query_position_embeddings.weight":
        return "queries.query_embed.weight"
    m = re.match(r"model\.(reference_points|enc_output|enc_output_norm|pos_trans|pos_trans_norm)\.(.*)$", key)
    if m:
        return f"queries.{m.group(1)}.{m.group(2)}"
    m = re.match(r"(class_embed|bbox_embed)\.(\d+)\.(.*)$", key)
    if m:
        return f"head.{m.group(1)}.{m.group(2)}.{m.group(3)}"
    return ""


def convert_state_dict(hf_state: dict[str, Tensor], target: dict[str, Tensor], num_backbone_levels: int,
                       where: str = "weights") -> dict[str, Tensor]:
    """Rename ``hf_state`` onto the keys of ``target`` (our model's state dict) and check shapes.

    Heads HF ties across layers may be stored once (index 0): every missing per-layer head entry is filled
    from index 0 of the same head.
    """
    out: dict[str, Tensor] = {}
    unknown = []
    # HF ties the top-level heads to model.decoder.{bbox,class}_embed; a saved file may hold either copy.
    for key, value in list(hf_state.items()):
        top = key.removeprefix("model.decoder.")
        if key.startswith(("model.decoder.bbox_embed.", "model.decoder.class_embed.")) and top not in hf_state:
            hf_state = {**hf_state, top: value}
    for key, value in hf_state.items():
        ours = rename_key(key, num_backbone_levels)
        if ours is None:
            continue
        shared = re.match(r"(class_embed|bbox_embed)\.(\d+)\.(.*)$", key)
        if ours not in target and shared and f"{shared.group(1)}.0.{shared.group(3)}" in hf_state:
            # a tied per-layer copy of a head our model shares across layers: it must equal index 0
            if torch.equal(value, hf_state[f"{shared.group(1)}.0.{shared.group(3)}"]):
                continue
        if ours == "" or ours not in target:
            unknown.append(key)
            continue
        out[ours] = value
    for key in target:
        m = re.match(r"head\.(class_embed|bbox_embed)\.(\d+)\.(.*)$", key)
        if key not in out and m and f"head.{m.group(1)}.0.{m.group(3)}" in out:
            out[key] = out[f"head.{m.group(1)}.0.{m.group(3)}"].clone()
    missing = [k for k in target if k not in out and not k.endswith("num_batches_tracked")]
    if unknown or missing:
        raise ConversionError(f"{where}: cannot map {len(unknown)} HF keys {unknown[:8]} / {len(missing)} matchdetr keys have no source {missing[:8]}")
    for key, value in out.items():
        if tuple(value.shape) != tuple(target[key].shape):
            raise ConversionError(f"{where}: shape of {key} is {tuple(value.shape)} in the source, {tuple(target[key].shape)} in matchdetr")
    return {k: v.to(target[k].dtype) for k, v in out.items()}


def convert_hf_deformable_detr(src: str | Path, out: str | Path) -> Path:
    """Convert a ``save_pretrained`` directory of DeformableDetrForObjectDetection into a matchdetr checkpoint."""
    from ..api import from_config

    src = Path(src)
    hf, state = _read_source(src)
    cfg, label_map = config_from_hf(hf, str(src / "config.json"))
    model = from_config(cfg, label_map)
    target = model.state_dict()
    converted = convert_state_dict(state, target, len(cfg.model.backbone.return_levels), str(src))
    for key in target:
        if key.endswith("num_batches_tracked") and key not in converted:
            converted[key] = target[key]
    model.load_state_dict(converted, strict=True)
    model.save(out)
    return Path(out)
