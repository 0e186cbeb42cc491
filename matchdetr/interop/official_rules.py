"""What the official-checkpoint families share: the :class:`Family` a family module hands the driver
(``official.py``) and the name-rule helpers both families use."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..config import Config
from .errors import ConversionError

_MAX_LISTED = 8


def listing(keys: list[str]) -> str:
    more = len(keys) - _MAX_LISTED
    return "[" + ", ".join(keys[:_MAX_LISTED]) + (f", ... and {more} more" if more > 0 else "") + "]"


def count_indices(state: dict[str, Tensor], pattern: str) -> int:
    """How many distinct values the first group of ``pattern`` takes over the keys (e.g. layer numbers)."""
    return len({m.group(1) for k in state if (m := re.match(pattern, k))})


def split_qkv(prefix: str, kind: str, value: Tensor) -> list[tuple[str, Tensor]]:
    """``torch.nn.MultiheadAttention``'s stacked ``in_proj_<kind>`` (W_q, W_k, W_v along dim 0) as our
    separate ``<prefix>self_attn.{q,k,v}_proj.<kind>`` tensors."""
    return [(f"{prefix}self_attn.{p}_proj.{kind}", t) for p, t in zip("qkv", value.chunk(3, 0))]


def fold_tied(state: dict[str, Tensor], tied: tuple[str, ...], where: str) -> dict[str, Tensor]:
    """Drop the releases' second copies of the heads stored under ``transformer.decoder.`` (keys starting with
    one of ``tied``), after checking each equals its top-level original (or using it where that is absent)."""
    out = {k: v for k, v in state.items() if not k.startswith(tied)}
    for key, value in state.items():
        if key.startswith(tied):
            top = key.removeprefix("transformer.decoder.")
            if top not in out:
                out[top] = value
            elif not torch.equal(out[top], value):
                raise ConversionError(f"{where}: {key} differs from {top}; the release ties them, so the file is inconsistent")
    return out


# detectron2's ResNet (modeling/backbone/resnet.py; detrex and Mask-DINO checkpoints) -> torchvision's names
_DETECTRON2_RESNET = [
    (r"backbone\.stem\.conv1\.weight", r"backbone.body.conv1.weight"),
    (r"backbone\.stem\.conv1\.norm\.(\w+)", r"backbone.body.bn1.\1"),
    (r"backbone\.res(\d)\.(\d+)\.conv(\d)\.weight", r"backbone.body.layer{s}.\2.conv\3.weight"),
    (r"backbone\.res(\d)\.(\d+)\.conv(\d)\.norm\.(\w+)", r"backbone.body.layer{s}.\2.bn\3.\4"),
    (r"backbone\.res(\d)\.(\d+)\.shortcut\.weight", r"backbone.body.layer{s}.\2.downsample.0.weight"),
    (r"backbone\.res(\d)\.(\d+)\.shortcut\.norm\.(\w+)", r"backbone.body.layer{s}.\2.downsample.1.\3"),
]


def detectron2_resnet(key: str, value: Tensor) -> list[tuple[str, Tensor]]:
    """One detectron2 ResNet key (``backbone.stem.*``, ``backbone.res{2-5}.*``) -> our torchvision-named
    ``backbone.body.*`` pair, or [] for a key that is not one."""
    for pattern, repl in _DETECTRON2_RESNET:
        m = re.fullmatch(pattern, key)
        if m:
            if "{s}" in repl:  # detectron2's res2..res5 are torchvision's layer1..layer4
                repl = repl.replace("{s}", str(int(m.group(1)) - 1))
            return [(m.expand(repl), value)]
    return []


_RESNET_DEPTH = {6: 50, 23: 101}  # blocks in res4 -> ResNet depth


def detectron2_resnet_depth(state: dict[str, Tensor], where: str) -> int:
    """The ResNet depth of a detectron2 ResNet checkpoint, from the block count of its res4 stage."""
    depth = count_indices(state, r"backbone\.res4\.(\d+)\.")
    if depth not in _RESNET_DEPTH:
        raise ConversionError(f"{where}: backbone res4 has {depth} blocks; only ResNet-50/101 are supported")
    return _RESNET_DEPTH[depth]


# Keys only one family's releases have, the first match wins (a Stable-DINO release has DINO's keys too): what
# names the family of a release given with another --family.
_RELEASE_KEYS = (("maskdino", "sem_seg_head."), ("stable-dino", "transformer.encoder.fusion_layer."),
                 ("dino", "transformer.tgt_embed."), ("sam-detr", "transformer.decoder.layers.0.point2."))


def use_family(state: dict[str, Tensor]) -> str:
    """``"; its <prefix>* keys are a <family> release's: use --family <family>"`` for a state dict whose keys
    show its family, else ``""``: the end of the one line refusing a release given with another ``--family``."""
    for name, prefix in _RELEASE_KEYS:
        if any(k.startswith(prefix) for k in state):
            return f"; its {prefix}* keys are a {name} release's: use --family {name}"
    return ""


def fit_label_enc(ours: str, value: Tensor, target: Tensor) -> Tensor:
    """The releases' ``label_enc`` is ``nn.Embedding(num_classes, d)``; ours has one more row, a padding label
    that denoising never looks up: appended as zeros. Every other tensor is returned as it is."""
    if ours == "queries.label_enc.weight" and value.shape[0] + 1 == target.shape[0]:
        return torch.cat([value, value.new_zeros(1, value.shape[1])])
    return value


Rule = Callable[[str, Tensor], "list[tuple[str, Tensor]] | None"]


@dataclass
class Family:
    """What the driver needs from a family module."""

    name: str
    config: Callable[[dict[str, Tensor], str | None, str], Config]  # (state, --preset, where) -> Config
    prepare: Callable[[dict[str, Tensor], str], dict[str, Tensor]]  # resolve tied duplicates etc.
    rule: Rule
    fit: Callable[[str, Tensor, Tensor], Tensor]  # (our key, mapped tensor, target tensor) -> tensor
    hint: Callable[[list[str]], str]  # a hint for unmapped keys (another family's checkpoint?)
    # the final config (after --set), for rules that depend on the architecture (Mask-DINO: the head count)
    bind: Callable[[Config], None] = lambda cfg: None
