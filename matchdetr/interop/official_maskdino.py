"""Name rules for the official Mask-DINO checkpoints (IDEA-Research/MaskDINO; see ``official.py`` for the driver).

Module structure read from the release: ``maskdino/maskdino.py`` (MaskDINO: ``backbone``, ``sem_seg_head``,
``criterion``), ``modeling/pixel_decoder/maskdino_encoder.py`` (MaskDINOEncoder),
``modeling/transformer_decoder/{maskdino_decoder,dino_decoder}.py`` and detectron2's ResNet
(``modeling/backbone/resnet.py``). Prefixes: ``P`` = ``sem_seg_head.pixel_decoder.``, ``D`` =
``sem_seg_head.predictor.``.

======================================================  ==================================================
official (MaskDINO)                                     matchdetr
======================================================  ==================================================
backbone.stem / backbone.res{s}.*                       backbone.body.* (as ``--family dino``)
backbone.patch_embed / layers / norm{i} (Swin)          backbone.* (unchanged; index buffers checked, dropped)
P input_proj.{i}.{0,1} (i < 3: res5, res4, res3)        neck.neck.proj.{2-i}.{0,1} (C3, C4, C5)
P input_proj.{3+k}.{0,1} (3x3 stride-2 extra levels)    neck.neck.extra.{k}.{0,1}
P transformer.level_embed [L, d]                        neck.neck.level_embed, rows reversed
P transformer.encoder.layers.{n}.self_attn.*            encoder.layers.{n}.self_attn.* (level axis reversed)
P transformer.encoder.layers.{n}.norm1 / norm2          encoder.layers.{n}.norm / ffn.norm
P transformer.encoder.layers.{n}.linear1 / linear2      encoder.layers.{n}.ffn.linear1 / ffn.linear2
P adapter_1 (Conv1x1, .norm GroupNorm)                  neck.lateral.0 / neck.lateral.1
P layer_1 (Conv3x3, .norm GroupNorm, ReLU)              fusion.output.0 / fusion.output.1
P mask_features                                         fusion.embed
D enc_output / enc_output_norm                          queries.base.enc_output / enc_output_norm
D class_embed                                           head.detection.class_embed.0
D _bbox_embed.layers.{j}                                head.detection.bbox_embed.0.layers.{j}
D label_enc.weight [C, d]                               queries.label_enc.weight [C + 1, d] (row C: zeros)
D mask_embed.layers.{j}                                 head.mask_embed.layers.{j}
D decoder_norm                                          decoder.norm and head.norm
D decoder.layers.{n}.self_attn.in_proj_*                decoder.layers.{n}.self_attn.{q,k,v}_proj (split in 3)
D decoder.layers.{n}.self_attn.out_proj                 decoder.layers.{n}.self_attn.out_proj
D decoder.layers.{n}.cross_attn.*                       decoder.layers.{n}.cross_attn.* (unchanged)
D decoder.layers.{n}.norm2 / norm1 / norm3              decoder.layers.{n}.norm1 / norm2 / ffn.norm
D decoder.layers.{n}.linear1 / linear2                  decoder.layers.{n}.ffn.linear1 / ffn.linear2
D decoder.ref_point_head.layers.{j}                     decoder.query_pos.ref_point_head.layers.{j}
======================================================  ==================================================

Level order. The release's 3-scale config (``FEATURE_ORDER: high2low``, the default of ``config.py``) feeds its
encoder ``[extra_k .. extra_1, res5, res4, res3]`` (maskdino_encoder.py ``forward_features``: ``srcsl[::-1]``
then ``srcsl.extend(srcs)``), the reverse of ours (C3, C4, C5, extras); its decoder reverses the encoder's
output again (maskdino_decoder.py ``forward``: ``idx = num_feature_levels - 1 - i``) and so reads our order.
Hence the encoder's level embedding and the level axis of its ``sampling_offsets`` (heads x levels x points x 2)
and ``attention_weights`` (heads x levels x points) are reversed, and the decoder's cross-attention is copied.
The ``low2high`` configs (the ``*_2048`` headline models) are refused: see :func:`config`. With 5 levels the
release's forward gives its two extra levels each other's positional embedding (maskdino_encoder.py:385 reverses
``srcsl`` but not ``posl``); no released checkpoint has 5 levels, and ours gives each level its own.

A converted model reproduces the release (to 1e-13 in float64, checked against the release's code) with the
positional offset 0 (``InputProjection(pos_offset=0.0)``) and ``Detector(size_divisibility=32,
padding_is_content=True)``, the release's conventions (``models/padding.py``).
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from .. import presets
from ..compose.archs import MaskDinoArch
from ..config import Config
from ..models.backbone import ResNetConfig
from ..models.swin import SwinConfig
from .errors import ConversionError
from .official_rules import (Family, count_indices, detectron2_resnet, detectron2_resnet_depth, fit_label_enc, listing,
                             split_qkv, use_family)
from .swin_weights import drop_index_buffers, rename_swin, swin_arch_from_state, swin_prefix

P, D = "sem_seg_head.pixel_decoder.", "sem_seg_head.predictor."
_P, _D = re.escape(P), re.escape(D)

# Keys dropped on purpose.
IGNORED = [
    "*.num_batches_tracked",  # BatchNorm step counters (training-only; FrozenBN releases have none)
    "criterion.empty_weight",  # the no-object weight of a CE loss (maskdino/modeling/criterion.py:152); focal here
    D + "decoder.norm.*",  # the same LayerNorm as decoder_norm (maskdino_decoder.py:148 passes it): checked equal
    D + "bbox_embed.*",  # _bbox_embed shared by every layer (maskdino_decoder.py:159-161): checked equal
    D + "decoder.bbox_embed.*",
]
_TIED = {D + "decoder.norm.": D + "decoder_norm.", D + "bbox_embed.": D + "_bbox_embed.",
         D + "decoder.bbox_embed.": D + "_bbox_embed."}
_BACKBONE_LEVELS = 3  # res3, res4, res5 in the encoder (DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES)
# The release's head count (MaskDINO.NHEADS, 8 in every config): the rule needs it to find the level axis of
# the encoder's attention rows; the driver passes the converted model's own (Family.bind).
RELEASE_HEADS = 8

_ENCODER = [("self_attn.", "self_attn."), ("norm1.", "norm."), ("norm2.", "ffn.norm."),
            ("linear1.", "ffn.linear1."), ("linear2.", "ffn.linear2.")]
# dino_decoder.py:185-200: norm1 follows the cross-attention, norm2 the self-attention, norm3 the FFN
_DECODER = [("self_attn.out_proj.", "self_attn.out_proj."), ("cross_attn.", "cross_attn."), ("norm2.", "norm1."),
            ("norm1.", "norm2."), ("norm3.", "ffn.norm."), ("linear1.", "ffn.linear1."), ("linear2.", "ffn.linear2.")]
_TOP = [
    (_P + r"adapter_1\.weight", "neck.lateral.0.weight"),
    (_P + r"adapter_1\.norm\.(\w+)", r"neck.lateral.1.\1"),
    (_P + r"layer_1\.weight", "fusion.output.0.weight"),
    (_P + r"layer_1\.norm\.(\w+)", r"fusion.output.1.\1"),
    (_P + r"mask_features\.(\w+)", r"fusion.embed.\1"),
    (_D + r"(enc_output|enc_output_norm)\.(\w+)", r"queries.base.\1.\2"),
    (_D + r"class_embed\.(\w+)", r"head.detection.class_embed.0.\1"),
    (_D + r"_bbox_embed\.layers\.(\d+)\.(\w+)", r"head.detection.bbox_embed.0.layers.\1.\2"),
    (_D + r"label_enc\.weight", "queries.label_enc.weight"),
    (_D + r"mask_embed\.layers\.(\d+)\.(\w+)", r"head.mask_embed.layers.\1.\2"),
    (_D + r"decoder\.ref_point_head\.layers\.(\d+)\.(\w+)", r"decoder.query_pos.ref_point_head.layers.\1.\2"),
]


def reverse_levels(value: Tensor, heads: int, levels: int) -> Tensor:
    """Rows of an attention projection laid out ``heads x levels x rest`` (MSDeformAttn's ``sampling_offsets``:
    rest = points x 2; ``attention_weights``: rest = points) with the level axis reversed."""
    return value.reshape(heads, levels, -1, *value.shape[1:]).flip(1).reshape(value.shape)


class _Rules:
    """The rename rules; the encoder's level reversal needs the head count (bound from our config) and the
    level count (read from the checkpoint in :meth:`prepare`)."""

    def __init__(self) -> None:
        self.heads, self.levels = RELEASE_HEADS, 0

    def bind(self, cfg: Config) -> None:
        self.heads = cfg.model.transformer.num_heads

    def prepare(self, state: dict[str, Tensor], where: str) -> dict[str, Tensor]:
        """Drop the tied copies after checking each equals its original; note the encoder's level count."""
        out = {k: v for k, v in state.items() if not k.startswith(tuple(_TIED))}
        for key, value in state.items():
            tied = next((c for c in _TIED if key.startswith(c)), None)
            if tied is None:
                continue
            rest = key[len(tied):]
            if tied.endswith("bbox_embed."):  # bbox_embed.{i}.layers... -> _bbox_embed.layers...
                rest = rest.split(".", 1)[1]
            original = _TIED[tied] + rest
            if original not in out:
                raise ConversionError(f"{where}: {key} has no original {original}")
            if not torch.equal(out[original], value):
                raise ConversionError(f"{where}: {key} differs from {original}; the release ties them, so the file is "
                                      f"inconsistent")
        if swin_prefix(out) == "backbone.":  # Swin: the index buffers are checked against the window, then dropped
            out = drop_index_buffers(out, where)
        embed = state.get(P + "transformer.level_embed")
        self.levels = 0 if embed is None else embed.shape[0]
        return out

    def rule(self, key: str, value: Tensor) -> list[tuple[str, Tensor]] | None:
        """One MaskDINO key -> our (key, tensor) pairs; None for IGNORED keys, [] for keys no rule knows."""
        if key.endswith("num_batches_tracked") or key == "criterion.empty_weight":
            return None
        if key.startswith("backbone."):
            return rename_swin(key, value, "backbone.") or detectron2_resnet(key, value)
        if key == P + "transformer.level_embed":
            return [("neck.neck.level_embed", value.flip(0))]
        m = re.fullmatch(_P + r"input_proj\.(\d+)\.([01])\.(\w+)", key)
        if m:
            i = int(m[1])  # res5, res4, res3, then the extra levels
            ours = f"proj.{_BACKBONE_LEVELS - 1 - i}" if i < _BACKBONE_LEVELS else f"extra.{i - _BACKBONE_LEVELS}"
            return [(f"neck.neck.{ours}.{m[2]}.{m[3]}", value)]
        m = re.fullmatch(_P + r"transformer\.encoder\.layers\.(\d+)\.(.+)", key)
        if m:
            prefix, rest = f"encoder.layers.{m[1]}.", m[2]
            if rest.startswith(("self_attn.sampling_offsets.", "self_attn.attention_weights.")):
                value = reverse_levels(value, self.heads, self.levels)
            return next(([(prefix + new + rest[len(old):], value)] for old, new in _ENCODER if rest.startswith(old)), [])
        m = re.fullmatch(_D + r"decoder\.layers\.(\d+)\.(.+)", key)
        if m:
            prefix, rest = f"decoder.layers.{m[1]}.", m[2]
            fused = re.fullmatch(r"self_attn\.in_proj_(weight|bias)", rest)
            if fused:  # torch.nn.MultiheadAttention stacks W_q, W_k, W_v along dim 0
                return split_qkv(prefix, fused[1], value)
            return next(([(prefix + new + rest[len(old):], value)] for old, new in _DECODER if rest.startswith(old)), [])
        m = re.fullmatch(_D + r"decoder_norm\.(\w+)", key)
        if m:  # the release applies it after every decoder layer and again before its heads (maskdino_decoder.py:504)
            return [(f"decoder.norm.{m[1]}", value), (f"head.norm.{m[1]}", value)]
        for pattern, repl in _TOP:
            m = re.fullmatch(pattern, key)
            if m:
                return [(m.expand(repl), value)]
        return []


def _input_proj(state: dict[str, Tensor]) -> list[Tensor]:
    n = count_indices(state, _P + r"input_proj\.(\d+)\.")
    return [state[f"{P}input_proj.{i}.0.weight"] for i in range(n)]


def config(family: str, state: dict[str, Tensor], preset: str | None, where: str) -> Config:
    """Our config for the checkpoint: the released R50 architecture (or ``preset``) with the checkpoint's
    class count, level count (3, 4 or 5 scales: C3-C5 and 0-2 extra stride-2 levels), layer counts, FFN widths,
    mask and hidden dims.

    A Swin backbone (the release's D2SwinTransformer: detectron2's Swin under Mask2Former's names, res2-res5
    through ``norm0-3``) is read off the weights (size, window) at the preset's levels; without ``--preset``,
    ``maskdino-swin-l`` (its drop path) or ``stable-maskdino-r50`` with the Swin put in.

    Refused, one line: the ``FEATURE_ORDER: low2high`` configs (the README's ``*_2048`` headline models): their decoder reads the
    levels coarse to fine, which alone is a permutation of the weights, but the proposals take their size from
    that order (``gen_encoder_output_proposals``: ``0.05 * 2**level``, now the largest on the finest level), and
    the instance model's anchors are ``mask2box`` ones (``box_ops.masks_to_boxes``: max index, one pixel smaller
    than ``bitmask``): model differences, not renames.
    """
    cls = state.get(D + "class_embed.weight")
    if cls is None or P + "transformer.level_embed" not in state:
        raise ConversionError(f"{where}: no {D}class_embed.weight / {P}transformer.level_embed: not a Mask-DINO "
                              f"checkpoint (keys {listing(sorted(state))}){use_family(state)}")
    proj = _input_proj(state)
    lateral = [w.shape[1] for w in proj if w.shape[-1] == 1]  # 1x1: backbone levels; 3x3 stride 2: extra levels
    if lateral != sorted(lateral, reverse=True):
        raise ConversionError(
            f"{where}: the encoder's input_proj reads {lateral} channels, fine to coarse: the release's FEATURE_ORDER "
            f"low2high (the *_2048 models), whose decoder sizes its proposals coarse to fine and whose anchors are "
            f"mask2box; not a rename of our Mask-DINO (high2low only)")
    if len(lateral) != _BACKBONE_LEVELS:
        raise ConversionError(f"{where}: the encoder reads {len(lateral)} backbone levels; ours reads res3-res5 (3), "
                              f"res2 only for the per-pixel embedding")
    swin = swin_arch_from_state(state, "backbone.", where) if swin_prefix(state) == "backbone." else None
    if preset is None:
        preset = "maskdino-swin-l" if swin is not None and family == "maskdino" else f"{family}-r50"
    cfg = presets.get(preset)
    stable = cfg.model.loss.class_loss.kind == "position_supervised"
    if not isinstance(cfg.model.arch, MaskDinoArch) or stable != (family == "stable-maskdino"):
        raise ConversionError(f"{where}: preset '{preset}' is not a {family} preset")
    m, t = cfg.model, cfg.model.transformer
    if swin is not None:  # the weights' own Swin and levels (its output norms); drop path (not in weights) the preset's
        keep = {"drop_path_rate": m.backbone.drop_path_rate} if isinstance(m.backbone, SwinConfig) else {}
        m.backbone = swin.config(**keep)
    elif isinstance(m.backbone, ResNetConfig):
        m.backbone.depth = detectron2_resnet_depth(state, where)
    m.num_classes, t.num_levels = cls.shape[0], len(proj)
    t.hidden_dim = state[D + "enc_output.weight"].shape[0]
    t.enc_layers = count_indices(state, _P + r"transformer\.encoder\.layers\.(\d+)\.")
    t.dec_layers = count_indices(state, _D + r"decoder\.layers\.(\d+)\.")
    m.arch.encoder_ffn_dim = state[P + "transformer.encoder.layers.0.linear1.weight"].shape[0]
    t.dim_feedforward = state[D + "decoder.layers.0.linear1.weight"].shape[0]
    m.arch.mask_dim = state[P + "mask_features.weight"].shape[0]
    m.postprocess.topk = min(m.postprocess.topk, t.num_queries * m.num_classes)
    return cfg


def hint(unknown: list[str]) -> str:
    if any(k.startswith(D + "query_feat.") for k in unknown):
        return f" ({D}query_feat is the release's LEARN_TGT option: learnt content queries, not in our Mask-DINO)"
    return ""


def family(name: str) -> Family:
    rules = _Rules()

    def cfg(state: dict[str, Tensor], preset: str | None, where: str) -> Config:
        out = config(name, state, preset, where)
        rules.bind(out)
        return out

    return Family(name, cfg, rules.prepare, rules.rule, fit_label_enc, hint, bind=rules.bind)
