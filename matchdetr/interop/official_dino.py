"""Name rules for detrex-format DINO and Stable-DINO checkpoints (see ``official.py`` for the driver).

Module structure read from IDEA-Research/detrex (``projects/dino/modeling/dino.py``, ``dino_transformer.py``,
``detrex/layers/{transformer,attention,mlp,multi_scale_deform_attn}.py``, ``detrex/modeling/neck/channel_mapper.py``,
``projects/dino/configs/models/dino_r50.py``), facebookresearch/detectron2 (``modeling/backbone/resnet.py``) and
IDEA-Research/Stable-DINO (``projects/stabledino/modeling/dino_transformer.py``, ``configs/models/stabledino_r50.py``):

==========================================================  =============================================
official (detrex)                                           matchdetr
==========================================================  =============================================
backbone.stem.conv1.weight / .norm.*                        backbone.body.conv1.weight / bn1.*
backbone.res{s}.{b}.conv{j}.weight / .norm.*                backbone.body.layer{s-1}.{b}.conv{j}.weight / bn{j}.*
backbone.res{s}.{b}.shortcut.weight / .norm.*               backbone.body.layer{s-1}.{b}.downsample.0 / .1
neck.convs.{i}.conv / .norm (GroupNorm)                     neck.proj.{i}.0 / .1
neck.extra_convs.{i}.conv / .norm                           neck.extra.{i}.0 / .1
transformer.level_embeds [levels, d]                        neck.level_embed [levels, d]
transformer.encoder.layers.{n}.attentions.0.*               encoder.layers.{n}.self_attn.*
transformer.encoder.layers.{n}.norms.0 / norms.1            encoder.layers.{n}.norm / ffn.norm
...layers.{n}.ffns.0.layers.0.0 / ffns.0.layers.1           ...layers.{n}.ffn.linear1 / ffn.linear2
transformer.encoder.fusion_layer.0 / .1 (Stable-DINO)       fusion.fuse.proj / fusion.fuse.norm
transformer.decoder.layers.{n}.attentions.0.attn.in_proj_*  decoder.layers.{n}.self_attn.{q,k,v}_proj (split in 3)
transformer.decoder.layers.{n}.attentions.0.attn.out_proj   decoder.layers.{n}.self_attn.out_proj
transformer.decoder.layers.{n}.attentions.1.*               decoder.layers.{n}.cross_attn.*
transformer.decoder.layers.{n}.norms.0 / 1 / 2              decoder.layers.{n}.norm1 / norm2 / ffn.norm
transformer.decoder.norm                                    decoder.norm
transformer.decoder.ref_point_head.layers.{i}               decoder.query_pos.ref_point_head.layers.{i}
transformer.tgt_embed / enc_output / enc_output_norm        queries.base.tgt_embed / enc_output / enc_output_norm
label_enc.weight [C, d]                                     queries.label_enc.weight [C + 1, d] (row C: zeros)
class_embed.{i} / bbox_embed.{i}.layers.{j} (i = 0..L)      head.class_embed.{i} / head.bbox_embed.{i}.layers.{j}
==========================================================  =============================================

Index L of the heads is the encoder-proposal head in both codebases. Our extra ``label_enc`` row is a padding
label that denoising never looks up, so its value does not matter; it is set to zeros.
"""

from __future__ import annotations

import re

from torch import Tensor

from .. import presets
from ..config import Config
from ..models.backbone import ResNetConfig
from .errors import ConversionError
from .swin_weights import SwinArch, drop_index_buffers, rename_swin, swin_arch_from_state, swin_prefix
from .official_rules import (Family, count_indices, detectron2_resnet, detectron2_resnet_depth, fit_label_enc, fold_tied,
                             listing, split_qkv, use_family)

# Keys dropped on purpose.
IGNORED = [
    "*.num_batches_tracked",  # BatchNorm step counters (training-only; frozen-BN releases have none)
    "criterion.*",  # loss-module buffers (e.g. a CE class-weight vector); none with the released focal loss
    "transformer.decoder.class_embed.*",  # the same modules as class_embed.* (detrex assigns them to the
    "transformer.decoder.bbox_embed.*",  # decoder too, so state_dict() holds every head twice); checked equal
]
_TIED = ("transformer.decoder.class_embed.", "transformer.decoder.bbox_embed.")

_LAYER = {  # inside transformer.{encoder,decoder}.layers.{n}.
    "encoder": [("attentions.0.", "self_attn."), ("norms.0.", "norm."), ("norms.1.", "ffn.norm."),
                ("ffns.0.layers.0.0.", "ffn.linear1."), ("ffns.0.layers.1.", "ffn.linear2.")],
    "decoder": [("attentions.0.attn.out_proj.", "self_attn.out_proj."), ("attentions.1.", "cross_attn."),
                ("norms.0.", "norm1."), ("norms.1.", "norm2."), ("norms.2.", "ffn.norm."),
                ("ffns.0.layers.0.0.", "ffn.linear1."), ("ffns.0.layers.1.", "ffn.linear2.")],
}
_DEFORM = ("sampling_offsets.", "attention_weights.", "value_proj.", "output_proj.")
_TOP = [
    (r"neck\.convs\.(\d+)\.conv\.(\w+)", r"neck.proj.\1.0.\2"),
    (r"neck\.convs\.(\d+)\.norm\.(\w+)", r"neck.proj.\1.1.\2"),
    (r"neck\.extra_convs\.(\d+)\.conv\.(\w+)", r"neck.extra.\1.0.\2"),
    (r"neck\.extra_convs\.(\d+)\.norm\.(\w+)", r"neck.extra.\1.1.\2"),
    (r"transformer\.level_embeds", r"neck.level_embed"),
    (r"transformer\.encoder\.fusion_layer\.0\.(\w+)", r"fusion.fuse.proj.\1"),
    (r"transformer\.encoder\.fusion_layer\.1\.(\w+)", r"fusion.fuse.norm.\1"),
    (r"transformer\.decoder\.norm\.(\w+)", r"decoder.norm.\1"),
    (r"transformer\.decoder\.ref_point_head\.layers\.(\d+)\.(\w+)", r"decoder.query_pos.ref_point_head.layers.\1.\2"),
    (r"transformer\.(tgt_embed|enc_output|enc_output_norm)\.(\w+)", r"queries.base.\1.\2"),
    (r"label_enc\.weight", r"queries.label_enc.weight"),
    (r"class_embed\.(\d+)\.(\w+)", r"head.class_embed.\1.\2"),
    (r"bbox_embed\.(\d+)\.layers\.(\d+)\.(\w+)", r"head.bbox_embed.\1.layers.\2.\3"),
]


def rename(key: str, value: Tensor) -> list[tuple[str, Tensor]] | None:
    """One detrex key -> our (key, tensor) pairs; None for IGNORED keys, [] for keys no rule knows."""
    if key.endswith("num_batches_tracked") or key.startswith("criterion."):
        return None
    if key.startswith("backbone."):
        return rename_swin(key, value, "backbone.") or detectron2_resnet(key, value)
    m = re.fullmatch(r"transformer\.(encoder|decoder)\.layers\.(\d+)\.(.+)", key)
    if m:
        part, n, rest = m.groups()
        prefix = f"{part}.layers.{n}."
        fused = re.fullmatch(r"attentions\.0\.attn\.in_proj_(weight|bias)", rest)
        if part == "decoder" and fused:  # torch.nn.MultiheadAttention stacks W_q, W_k, W_v along dim 0
            return split_qkv(prefix, fused.group(1), value)
        for old, new in _LAYER[part]:
            if rest.startswith(old) and (old not in ("attentions.0.", "attentions.1.") or rest[len(old):].startswith(_DEFORM)):
                return [(prefix + new + rest[len(old):], value)]
        return []
    for pattern, repl in _TOP:
        m = re.fullmatch(pattern, key)
        if m:
            return [(m.expand(repl), value)]
    return []






def config(family: str, state: dict[str, Tensor], preset: str | None, where: str) -> Config:
    """Our config for the checkpoint: the released architecture (or ``preset``) with the checkpoint's class
    count, query count, layer counts and FFN width."""
    if any(k.startswith(("backbone.0.body.", "input_proj.")) for k in state):
        raise ConversionError(f"{where}: this looks like a DETR-style checkpoint (backbone.0.body.*, input_proj.*), "
                              f"not detrex-format; --family {family} reads detrex/detectron2 names{use_family(state)}")
    cls = state.get("class_embed.0.weight", state.get("transformer.decoder.class_embed.0.weight"))
    if cls is None or "transformer.tgt_embed.weight" not in state:
        raise ConversionError(f"{where}: no class_embed.0.weight / transformer.tgt_embed.weight: not a detrex "
                              f"DINO checkpoint (keys {listing(sorted(state))}){use_family(state)}")
    swin = swin_arch_from_state(state, "backbone.", where) if swin_prefix(state) == "backbone." else None
    if preset is None:
        levels = count_indices(state, r"neck\.convs\.(\d+)\.") + count_indices(state, r"neck\.extra_convs\.(\d+)\.")
        if levels not in (4, 5):
            raise ConversionError(f"{where}: {levels} feature levels; only the 4- and 5-scale models are released")
        preset = _swin_preset(family, levels, swin) if swin is not None else f"{family}-{levels}scale-r50"
    cfg = presets.get(preset)
    dense = cfg.model.memory_fusion is not None and cfg.model.memory_fusion.kind == "dense"
    if cfg.model.arch.kind != "dino" or dense != (family == "stable-dino"):
        raise ConversionError(f"{where}: preset '{preset}' is not a {family} preset")
    if swin is not None:  # the checkpoint's own Swin (T, S, B, L at 224 or 384) at its levels (its output norms)
        cfg.model.backbone = swin.config()
    elif isinstance(cfg.model.backbone, ResNetConfig):
        cfg.model.backbone.depth = detectron2_resnet_depth(state, where)
    m, t = cfg.model, cfg.model.transformer
    m.num_classes, t.num_queries = cls.shape[0], state["transformer.tgt_embed.weight"].shape[0]
    t.enc_layers = count_indices(state, r"transformer\.encoder\.layers\.(\d+)\.")
    t.dec_layers = count_indices(state, r"transformer\.decoder\.layers\.(\d+)\.")
    ffn = state.get("transformer.encoder.layers.0.ffns.0.layers.0.0.weight")
    if ffn is not None:
        t.dim_feedforward = ffn.shape[0]
    m.postprocess.topk = min(m.postprocess.topk, t.num_queries * m.num_classes)
    return cfg


def _swin_preset(family: str, levels: int, swin: SwinArch) -> str:
    """The preset a DINO-Swin checkpoint is closest to: its own where one exists (Swin-T, Swin-L), else the
    Swin-L one of its scale (the backbone itself is then set from the weights)."""
    sized = {"swin-t": "swin-t", "swin-l-384": "swin-l"}.get(swin.size or "", "swin-l")
    name = f"{family}-{levels}scale-{sized}"
    return name if name in presets.names() else f"{family}-{levels}scale-swin-l"


def hint(unknown: list[str]) -> str:
    if any("fusion_layer" in k for k in unknown):
        return " (transformer.encoder.fusion_layer is Stable-DINO's memory fusion: use --family stable-dino)"
    return ""


def family(name: str) -> Family:
    def missing_fusion(state: dict[str, Tensor], where: str) -> dict[str, Tensor]:
        if name == "stable-dino" and not any(k.startswith("transformer.encoder.fusion_layer.") for k in state):
            raise ConversionError(f"{where}: no transformer.encoder.fusion_layer.*: not a Stable-DINO (dense fusion) "
                                  f"checkpoint{use_family(state) or '; a plain DINO one converts with --family dino'}")
        if swin_prefix(state) == "backbone.":  # the index buffers are checked against the window, then dropped
            state = drop_index_buffers(state, where)
        return fold_tied(state, _TIED, where)

    return Family(name, lambda s, p, w: config(name, s, p, w), missing_fusion, rename, fit_label_enc, hint)
