"""Pieces of the hand-made inverses (our names -> a release's) that the official-checkpoint tests share."""

from __future__ import annotations

import re

import torch

# our torchvision-named ResNet -> detectron2's (detrex DINO, Mask-DINO): (our regex, replacement), first match wins
DETECTRON2_RESNET = [
    (r"backbone\.body\.conv1\.", "backbone.stem.conv1."), (r"backbone\.body\.bn1\.", "backbone.stem.conv1.norm."),
    (r"backbone\.body\.layer(\d)\.(\d+)\.downsample\.0\.", lambda m: f"backbone.res{int(m[1]) + 1}.{m[2]}.shortcut."),
    (r"backbone\.body\.layer(\d)\.(\d+)\.downsample\.1\.", lambda m: f"backbone.res{int(m[1]) + 1}.{m[2]}.shortcut.norm."),
    (r"backbone\.body\.layer(\d)\.(\d+)\.conv(\d)\.", lambda m: f"backbone.res{int(m[1]) + 1}.{m[2]}.conv{m[3]}."),
    (r"backbone\.body\.layer(\d)\.(\d+)\.bn(\d)\.", lambda m: f"backbone.res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.norm."),
]


def packed_self_attention(ours: dict[str, torch.Tensor], key: str) -> tuple[str, str, torch.Tensor] | None:
    """For our decoder's ``self_attn.q_proj`` key: (layer, weight|bias, nn.MultiheadAttention's packed
    ``[W_q; W_k; W_v]``); None for any other key. Its ``k_proj`` / ``v_proj`` keys are then skipped
    (:func:`is_packed`)."""
    m = re.fullmatch(r"decoder\.layers\.(\d+)\.self_attn\.q_proj\.(weight|bias)", key)
    if m is None:
        return None
    return m[1], m[2], torch.cat([ours[key.replace("q_proj", p)] for p in ("q_proj", "k_proj", "v_proj")])


def is_packed(key: str) -> bool:
    return re.fullmatch(r"decoder\.layers\.\d+\.self_attn\.[kv]_proj\.\w+", key) is not None


def renamed(key: str, subs: list) -> str:
    """``key`` renamed by the first ``(regex, replacement)`` of ``subs`` that matches its start."""
    for pattern, repl in subs:
        if re.match(pattern, key):
            return re.sub(pattern, repl, key, count=1)
    raise AssertionError(f"test inverse has no rule for {key}")
