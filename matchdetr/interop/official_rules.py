"""What the official-checkpoint families share: the :class:`Family` a family module hands the driver
(``official.py``) and the name-rule helpers both families use."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..config import Config
from .hf_deformable_detr import ConversionError

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
