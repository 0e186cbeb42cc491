"""Swin Transformer weights: Microsoft's ImageNet files into :class:`~matchdetr.models.swin.SwinBackbone`, the
released detectors' backbone keys onto ours, and the architecture read off a state dict.

Our Swin keeps detectron2's names, which are Microsoft's, so nothing is renamed below a prefix:

==============================================  ==========================================================
source                                          keys
==============================================  ==========================================================
microsoft/Swin-Transformer ImageNet files       ``{"model": {...}}``: ``patch_embed.*``, ``layers.*``, plus
(``swin_large_patch4_window12_384_22k.pth``)    ``norm.*`` (classifier norm), ``head.*``, ``*.attn_mask``
detrex DINO-Swin / Stable-DINO checkpoints      ``backbone.`` + ours (``norm{s}`` output norms included)
IDEA-Research/DINO checkpoints                  ``backbone.0.`` + ours (its ``Joiner`` is a Sequential)
==============================================  ==========================================================

Every source also stores each block's ``attn.relative_position_index``, a buffer that follows from the window
size (ours is not saved): it is checked to be the window's index and dropped. ``attn_mask`` (Microsoft's
classifier precomputes the shift mask for its training resolution) is ignored: the mask is built per forward for
the padded size. An ImageNet file has no output norms; they keep their initialisation, as in the release (which
loads these files non-strictly).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from ..models.swin import SIZES, SwinBackbone, SwinConfig, relative_position_index
from .errors import ConversionError
from .official_rules import count_indices, listing
from .torchvision_resnet import load_checked, read_state_dict

# The detector releases' backbone prefixes: detrex (and Stable-DINO), the original IDEA-Research/DINO repo.
PREFIXES = {"detrex": "backbone.", "dino": "backbone.0."}
_INDEX = ".relative_position_index"
_OUT_NORM = re.compile(r"norm(\d)\.")
_OURS = re.compile(r"(patch_embed|layers|norm\d)\.")


def group_keys(keys: list[str]) -> str:
    """``a.0.b, a.1.b, c`` -> ``2 x a.*.b, c``: one short listing of many per-block keys."""
    groups: dict[str, int] = {}
    for key in keys:
        pattern = re.sub(r"(?<=\.)\d+(?=\.)", "*", key)
        groups[pattern] = groups.get(pattern, 0) + 1
    return ", ".join(p if n == 1 else f"{n} x {p}" for p, n in groups.items())


def drop_index_buffers(state: dict[str, Tensor], where: str) -> dict[str, Tensor]:
    """``state`` without its ``*.relative_position_index`` buffers, after checking each is the index of the
    window its shape implies (``[M*M, M*M]``) and agrees with the bias table beside it (``(2M-1)^2`` rows)."""
    out = {k: v for k, v in state.items() if not k.endswith(_INDEX)}
    for key, value in state.items():
        if not key.endswith(_INDEX):
            continue
        window = math.isqrt(value.shape[0]) if value.dim() == 2 else 0
        table = state.get(key[: -len(_INDEX)] + ".relative_position_bias_table")
        if window < 1 or value.shape != (window * window,) * 2:
            raise ConversionError(f"{where}: {key} has shape {tuple(value.shape)}, not [M*M, M*M] for a window M")
        if table is not None and table.shape[0] != (2 * window - 1) ** 2:
            raise ConversionError(f"{where}: {key} is for window {window} but the bias table beside it has "
                                  f"{table.shape[0]} rows, not {(2 * window - 1) ** 2}")
        if not torch.equal(value.to(torch.long), relative_position_index(window)):
            raise ConversionError(f"{where}: {key} is not the relative position index of a {window}x{window} "
                                  f"window (a different layout of the bias table?)")
    return out


def load_swin_imagenet(backbone: SwinBackbone, path: str | os.PathLike[str]) -> str:
    """Copy a Microsoft Swin ImageNet file (plain or under ``model``; ``.pth`` or ``.safetensors``) into
    ``backbone`` in place (frozen stages, dtype and device kept) and return one line saying what was ignored.

    Ignored: ``head.*``, the classifier's ``norm.*``, ``*.attn_mask`` and the stages a backbone did not build;
    the index buffers are checked and dropped. Any other missing, unexpected or mis-shaped key is a one-line
    ``ValueError`` naming the file and the keys.
    """
    path = os.fspath(path)
    state = drop_index_buffers(read_state_dict(path, unwrap=("model",)), path)
    ignored = [k for k in state if k.startswith("head.") or k in ("norm.weight", "norm.bias") or k.endswith(".attn_mask")]
    unbuilt = {k: p for k in state if k not in ignored and (p := _unbuilt(backbone, k))}
    weights = {k: v for k, v in state.items() if k not in ignored and k not in unbuilt}
    ours = backbone.state_dict()
    fresh = [k for k in ours if _OUT_NORM.match(k) and k not in weights]
    weights.update({k: ours[k] for k in fresh})  # output norms: none in an ImageNet file
    load_checked(backbone, weights, path, "is it a microsoft/Swin-Transformer (v1) ImageNet file?",
                 "a different Swin size or window than the backbone's?")
    norms = sorted({k.split(".")[0] for k in fresh})
    skipped = f"; stages not built: {', '.join(sorted(set(unbuilt.values())))}" if unbuilt else ""
    return (f"{path}: loaded {len(weights) - len(fresh)} tensors; ignored {group_keys(ignored) or 'nothing'}{skipped}; "
            f"relative_position_index buffers checked and dropped; "
            f"output norms {', '.join(norms) or 'none'} kept at initialisation (an ImageNet file has none)")


def _unbuilt(backbone: SwinBackbone, key: str) -> str:
    """The part of the network ``key`` belongs to when ``backbone`` did not build it (``layers.3.*``), else ``""``."""
    stage = re.match(r"layers\.(\d+)\.", key)
    if stage is None:
        return ""
    s = int(stage.group(1))
    if s >= len(backbone.layers):
        return f"layers.{s}.*"
    return f"layers.{s}.downsample.*" if ".downsample." in key and backbone.layers[s].downsample is None else ""


def swin_prefix(state: dict[str, Tensor]) -> str | None:
    """The prefix of a detector checkpoint's Swin backbone keys (``backbone.`` detrex, ``backbone.0.`` DINO), or
    None when it holds no Swin."""
    return next((p for p in PREFIXES.values() if p + "patch_embed.proj.weight" in state), None)


def rename_swin(key: str, value: Tensor, prefix: str) -> list[tuple[str, Tensor]]:
    """A release's Swin backbone key (``prefix`` + our name) -> ``[("backbone." + our name, value)]``; ``[]``
    for keys that are not under ``prefix`` or not Swin's. Run :func:`drop_index_buffers` over the state first."""
    rest = key[len(prefix):] if key.startswith(prefix) else ""
    return [("backbone." + rest, value)] if _OURS.match(rest) and not rest.endswith(_INDEX) else []


@dataclass(frozen=True)
class SwinArch:
    """A Swin backbone's architecture as its weights show it.

    out_levels: the levels (stride exponents 2..5) that have an output norm ``norm{level - 2}``: (3, 4, 5) for
    a 4-scale detrex model, (2, 3, 4, 5) for a 5-scale one, () for an ImageNet file.
    """

    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: int
    mlp_ratio: float
    qkv_bias: bool
    patch_size: int
    patch_norm: bool
    out_levels: tuple[int, ...]

    @property
    def size(self) -> str | None:
        """The name of the released size in :data:`~matchdetr.models.swin.SIZES` it is (``swin-l-384``), if any."""
        key = (self.embed_dim, self.depths, self.num_heads, self.window_size)
        return next((n for n, s in SIZES.items() if (s.embed_dim, s.depths, s.num_heads, s.window_size) == key), None)

    def backbone_kwargs(self) -> dict[str, object]:
        """Keyword arguments of a :class:`SwinBackbone` with these weights' shapes (drop path, a training
        setting, is not in the weights: the released size's rate, else the constructor's default)."""
        kw: dict[str, object] = {k: v for k, v in asdict(self).items() if k != "out_levels"}
        kw["return_levels"] = self.out_levels or (3, 4, 5)
        if self.size is not None:
            kw["drop_path_rate"] = SIZES[self.size].drop_path_rate
        return kw

    def config(self, **fields: object) -> SwinConfig:
        """The :class:`~matchdetr.models.swin.SwinConfig` of these weights (``fields`` set on top, e.g. a
        preset's drop path)."""
        kw = {k: list(v) if isinstance(v, tuple) else v for k, v in self.backbone_kwargs().items()}
        return SwinConfig(**{**kw, **fields})  # type: ignore[arg-type]


def swin_arch_from_state(state: dict[str, Tensor], prefix: str = "", where: str = "state dict") -> SwinArch:
    """Read the architecture off Swin keys under ``prefix`` (``""`` for an ImageNet file, see :data:`PREFIXES`).

    embed_dim and patch size from the patch projection, depths from the block indices, heads from the bias
    tables' columns, the window from their rows ((2M-1)^2: 169 -> 7, 529 -> 12), the MLP ratio from ``fc1``.
    """
    proj = state.get(prefix + "patch_embed.proj.weight")
    if proj is None:
        raise ConversionError(f"{where}: no {prefix}patch_embed.proj.weight: not a Swin Transformer (keys "
                              f"{listing(sorted(state))})")
    esc = re.escape(prefix)
    stages = count_indices(state, rf"{esc}layers\.(\d+)\.")
    depths = tuple(count_indices(state, rf"{esc}layers\.{s}\.blocks\.(\d+)\.") for s in range(stages))
    if stages != 4 or 0 in depths:
        raise ConversionError(f"{where}: {stages} Swin stages with {list(depths)} blocks; expected 4 non-empty stages")
    tables = [state[f"{prefix}layers.{s}.blocks.0.attn.relative_position_bias_table"] for s in range(4)]
    window = (math.isqrt(tables[0].shape[0]) + 1) // 2
    if any(t.shape[0] != (2 * window - 1) ** 2 for t in tables):
        raise ConversionError(f"{where}: relative position bias tables of {[t.shape[0] for t in tables]} rows; "
                              f"expected (2M-1)^2 for one window size M")
    embed = proj.shape[0]
    return SwinArch(
        embed_dim=embed, depths=depths, num_heads=tuple(t.shape[1] for t in tables), window_size=window,
        mlp_ratio=state[prefix + "layers.0.blocks.0.mlp.fc1.weight"].shape[0] / embed,
        qkv_bias=prefix + "layers.0.blocks.0.attn.qkv.bias" in state, patch_size=proj.shape[-1],
        patch_norm=prefix + "patch_embed.norm.weight" in state,
        out_levels=tuple(s + 2 for s in range(4) if f"{prefix}norm{s}.weight" in state))
