"""Name rules for the official SAM-DETR / SAM-DETR++ checkpoints (ZhangGongjie/SAM-DETR; see ``official.py``).

Module structure read from the release: ``models/fast_detr.py`` (FastDETR), ``models/transformer.py``,
``models/transformer_encoder.py``, ``models/transformer_decoder.py``, ``models/attention.py`` (its
MultiheadAttention has no input projections, only ``out_proj``) and ``models/backbone.py`` (DETR's
``Joiner``: torchvision ResNet names under ``backbone.0.body``, FrozenBatchNorm2d).

==============================================================  ============================================
official (SAM-DETR)                                             matchdetr
==============================================================  ============================================
backbone.0.body.{conv1,bn1,layerK...}                           backbone.body.{same torchvision names}
input_proj.{l}.0 (Conv1x1) / input_proj.{l}.1 (GroupNorm)       neck.proj.{l}.0 / neck.proj.{l}.1
transformer.level_embed [3, d] (multi-scale)                    neck.level_embed
transformer.encoder.layers.{n}.self_attn.in_proj_* (1 scale)    encoder.layers.{n}.self_attn.{q,k,v}_proj (split)
transformer.encoder.layers.{n}.self_attn.{out_proj | MSDeformAttn}  encoder.layers.{n}.self_attn.{same}
transformer.encoder.layers.{n}.norm1 / linear1 / linear2 / norm2    encoder.layers.{n}.norm / ffn.linear1 / ffn.linear2 / ffn.norm
transformer.decoder.layers.{n}.sa_{q,k}{content,pos}_proj       decoder.layers.{n}.self_attn.{q,k}_{content,pos}
transformer.decoder.layers.{n}.sa_v_proj / self_attn.out_proj   decoder.layers.{n}.self_attn.v_proj / out_proj
transformer.decoder.layers.{n}.point1.0 / point2.{0,2,4,6}      decoder.layers.{n}.aligner.point_conv.0 / point_mlp.{same}
transformer.decoder.layers.{n}.attn1 / attn2                    decoder.layers.{n}.aligner.reweight_content / reweight_pos
transformer.decoder.layers.{n}.ca_{q,k}content_proj / ca_v_proj decoder.layers.{n}.cross_attn.{q,k}_content / v_proj
transformer.decoder.layers.{n}.ca_{q,k}pos_sine_proj.layers.{i} decoder.layers.{n}.cross_attn.{q,k}_pos.layers.{i}
transformer.decoder.layers.{n}.cross_attn.out_proj              decoder.layers.{n}.cross_attn.out_proj
transformer.decoder.layers.{n}.norm1 / norm2 / linear1 / linear2 / norm3   ...norm1 / norm2 / ffn.linear1 / ffn.linear2 / ffn.norm
query_embed.weight [N, 4] (reference boxes, pre-sigmoid)        queries.query_embed.weight
class_embed.{i} / bbox_embed.{i}.layers.{j} (i = 0..L-1)        head.class_embed.{i} / head.bbox_embed.{i}.layers.{j}
==============================================================  ============================================

The keypoint MLP's last layer is ``[x, y] x M`` (then, with SMCA, ``[sx, sy] x M``) and the reweighting
outputs are ``M x d`` head-major in both codebases, so every tensor is copied unchanged. Classes are 91 logits
indexed by COCO category id (DETR's convention). The weights cannot tell DC5 from C5: the DC5 models are
recognised by ``dc5`` in the file name, or chosen with ``--preset sam-detr-r50-dc5``.
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor

from .. import presets
from ..compose.archs import SamDetrArch
from ..config import Config
from .errors import ConversionError
from .official_rules import Family, count_indices, fold_tied, listing, split_qkv, use_family

IGNORED = [
    "*.num_batches_tracked",  # BatchNorm step counters (training-only)
    "transformer.decoder.bbox_embed.*",  # FastDETR hands bbox_embed to the decoder too: a tied copy, checked equal
]
_TIED = ("transformer.decoder.bbox_embed.",)
_DECODER = [  # inside transformer.decoder.layers.{n}.
    ("sa_qcontent_proj.", "self_attn.q_content."), ("sa_qpos_proj.", "self_attn.q_pos."),
    ("sa_kcontent_proj.", "self_attn.k_content."), ("sa_kpos_proj.", "self_attn.k_pos."),
    ("sa_v_proj.", "self_attn.v_proj."), ("self_attn.out_proj.", "self_attn.out_proj."),
    ("ca_qcontent_proj.", "cross_attn.q_content."), ("ca_kcontent_proj.", "cross_attn.k_content."),
    ("ca_v_proj.", "cross_attn.v_proj."), ("ca_qpos_sine_proj.", "cross_attn.q_pos."),
    ("ca_kpos_sine_proj.", "cross_attn.k_pos."), ("cross_attn.out_proj.", "cross_attn.out_proj."),
    ("point1.", "aligner.point_conv."), ("point2.", "aligner.point_mlp."),
    ("attn1.", "aligner.reweight_content."), ("attn2.", "aligner.reweight_pos."),
    ("norm1.", "norm1."), ("norm2.", "norm2."), ("norm3.", "ffn.norm."),
    ("linear1.", "ffn.linear1."), ("linear2.", "ffn.linear2."),
]
_ENCODER = [("self_attn.", "self_attn."), ("norm1.", "norm."), ("norm2.", "ffn.norm."),
            ("linear1.", "ffn.linear1."), ("linear2.", "ffn.linear2.")]
_TOP = [
    (r"backbone\.0\.body\.(.+)", r"backbone.body.\1"),
    (r"input_proj\.(\d+)\.([01])\.(\w+)", r"neck.proj.\1.\2.\3"),
    (r"transformer\.level_embed", r"neck.level_embed"),
    (r"query_embed\.weight", r"queries.query_embed.weight"),
    (r"class_embed\.(\d+)\.(\w+)", r"head.class_embed.\1.\2"),
    (r"bbox_embed\.(\d+)\.layers\.(\d+)\.(\w+)", r"head.bbox_embed.\1.layers.\2.\3"),
]


def rename(key: str, value: Tensor) -> list[tuple[str, Tensor]] | None:
    """One SAM-DETR key -> our (key, tensor) pairs; None for IGNORED keys, [] for keys no rule knows."""
    if key.endswith("num_batches_tracked"):
        return None
    m = re.fullmatch(r"transformer\.(encoder|decoder)\.layers\.(\d+)\.(.+)", key)
    if m:
        part, n, rest = m.groups()
        prefix = f"{part}.layers.{n}."
        fused = re.fullmatch(r"self_attn\.in_proj_(weight|bias)", rest)
        if part == "encoder" and fused:  # torch.nn.MultiheadAttention stacks W_q, W_k, W_v along dim 0
            return split_qkv(prefix, fused.group(1), value)
        for old, new in _DECODER if part == "decoder" else _ENCODER:
            if rest.startswith(old):
                return [(prefix + new + rest[len(old):], value)]
        return []
    for pattern, repl in _TOP:
        m = re.fullmatch(pattern, key)
        if m:
            return [(m.expand(repl), value)]
    return []






def config(state: dict[str, Tensor], preset: str | None, where: str) -> Config:
    """The released architecture: multi-scale from ``transformer.level_embed``, SMCA from the keypoint MLP's
    output width (4M instead of 2M), GroupNorm in the single-scale input projection (the 12-epoch runs)."""
    if any(k.startswith(("backbone.res", "backbone.stem.", "neck.")) for k in state):
        raise ConversionError(f"{where}: this looks like a detrex-format checkpoint (backbone.stem/res*, neck.*), "
                              f"not SAM-DETR{use_family(state) or ': use --family dino or stable-dino'}")
    point = state.get("transformer.decoder.layers.0.point2.6.weight")
    cls = state.get("class_embed.0.weight")
    if point is None or cls is None or "query_embed.weight" not in state:
        raise ConversionError(f"{where}: no transformer.decoder.layers.0.point2.6.weight / class_embed.0.weight / "
                              f"query_embed.weight: not a SAM-DETR checkpoint (keys {listing(sorted(state))})"
                              f"{use_family(state)}")
    multiscale = "transformer.level_embed" in state
    heads = presets.get("sam-detr-r50").model.transformer.num_heads
    smca = point.shape[0] == 4 * heads
    # the weights cannot tell DC5 from C5: the file name or its folder does (the release's output folders are
    # named like r50_dc5_smca_e50/checkpoint.pth)
    dc5 = any("dc5" in part.lower() for part in Path(where).parts[-2:])
    if preset is None:
        preset = "sam-detr-" + ("plus-plus-" if multiscale else "") + ("smca-" if smca else "") + "r50"
    cfg = presets.get(preset)
    m, t = cfg.model, cfg.model.transformer
    if not isinstance(m.arch, SamDetrArch) or m.arch.multiscale != multiscale or m.arch.smca != smca:
        raise ConversionError(f"{where}: preset '{preset}' does not match the checkpoint (multi-scale {multiscale}, "
                              f"SMCA {smca})")
    if dc5 and not multiscale:
        m.backbone.dilation = True
    m.arch.group_norm = not multiscale and "input_proj.0.1.weight" in state
    m.num_classes, t.num_queries = cls.shape[0], state["query_embed.weight"].shape[0]
    t.enc_layers = count_indices(state, r"transformer\.encoder\.layers\.(\d+)\.")
    t.dec_layers = count_indices(state, r"transformer\.decoder\.layers\.(\d+)\.")
    t.dim_feedforward = state["transformer.decoder.layers.0.linear1.weight"].shape[0]
    if multiscale:
        m.arch.encoder_ffn_dim = state["transformer.encoder.layers.0.linear1.weight"].shape[0]
    m.postprocess.topk = min(m.postprocess.topk, t.num_queries * m.num_classes)
    return cfg


def hint(unknown: list[str]) -> str:
    return ""


def family(name: str) -> Family:
    return Family(name, config, lambda state, where: fold_tied(state, _TIED, where), rename,
                  lambda ours, value, target: value, hint)
