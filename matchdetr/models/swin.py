"""Swin Transformer (Liu et al. 2021, "Hierarchical Vision Transformer using Shifted Windows") as a detection
backbone, computing what detectron2's ``modeling/backbone/swin.py`` computes: the backbone of detrex's DINO-Swin
models and of the Stable-DINO release, which both use it unchanged (it is itself the mmdet object-detection
Swin of Microsoft's Swin-Transformer-Object-Detection).

Module and parameter names are detectron2's (``patch_embed.proj/norm``, ``layers.{s}.blocks.{b}.{norm1,
attn.qkv, attn.proj, attn.relative_position_bias_table, norm2, mlp.fc1, mlp.fc2}``, ``layers.{s}.downsample.
{reduction, norm}``, output norms ``norm{s}``), so a detrex key is ours without its ``backbone.`` prefix.
``relative_position_index`` is a non-persistent buffer: it follows from the window size, so our state dicts do
not carry it (the converters check the releases' copies and drop them).

Behaviour of the detection code that differs from the classification code (and from HF's ``SwinModel``):
- the image is zero-padded right/bottom to a multiple of the patch size;
- every block pads its normalised input right/bottom with zeros to a multiple of the window and attends over
  those zero tokens unmasked; only the shift's wrap-around regions are masked (-100, paper sec. 3.2);
- every odd block of every stage shifts by ``window // 2``, whatever the feature size (no clamping of the
  window to a small map), with the shift mask built per forward for the padded size;
- PatchMerging pads odd sizes by one, so feature sizes round up (301 x 457: 76 x 115, 38 x 58, 19 x 29 and
  10 x 15 at strides 4 .. 32; a DINO neck's stride-2 conv on the last makes 5 x 8).

Levels are stride exponents as for our other backbones: stage s (``layers.s``) is level s + 2, i.e. detectron2's
``p0..p3`` at strides 4, 8, 16, 32. Sizes are traced under ONNX export (no Python ints from tensor shapes), so
an exported graph pads and masks for whatever size it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import LEVELS, level_outputs
from .layers import run_layer

# Input normalisation of the release (detrex ``dino_r50.py``: pixel_mean / pixel_std on 0..255 RGB): ImageNet's.
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


@dataclass(frozen=True)
class SwinSize:
    """One released Swin architecture (Liu et al. 2021 table 1; window and drop path as detrex configures it)."""

    embed_dim: int
    depths: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int]
    window_size: int
    drop_path_rate: float


# The sizes detrex's DINO-Swin configs use (``projects/dino/configs/models/dino_swin_*.py``); where a config names
# no drop path, detectron2's default 0.2 applies.
SIZES: dict[str, SwinSize] = {
    "swin-t": SwinSize(96, (2, 2, 6, 2), (3, 6, 12, 24), 7, 0.1),
    "swin-s": SwinSize(96, (2, 2, 18, 2), (3, 6, 12, 24), 7, 0.2),
    "swin-b-384": SwinSize(128, (2, 2, 18, 2), (4, 8, 16, 32), 12, 0.2),
    "swin-l-224": SwinSize(192, (2, 2, 18, 2), (6, 12, 24, 48), 7, 0.2),
    "swin-l-384": SwinSize(192, (2, 2, 18, 2), (6, 12, 24, 48), 12, 0.2),
}


def relative_position_index(window: int, device: torch.device | None = None) -> Tensor:
    """``[M*M, M*M]`` int64: row of the bias table for each (query, key) pair of an M x M window (paper sec. 3.2:
    offsets along each axis lie in [-M+1, M-1], so the table has (2M-1)^2 rows, read row-major)."""
    ij = torch.arange(window, device=device)
    coords = torch.stack(torch.meshgrid(ij, ij, indexing="ij")).flatten(1)  # [2, N]
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)  # [2, N, N], each in 0 .. 2M-2
    return rel[0] * (2 * window - 1) + rel[1]


def window_partition(x: Tensor, window: int) -> Tensor:
    """``[B, Hp, Wp, C]`` (Hp, Wp multiples of ``window``) -> ``[B, nW, window*window, C]``, windows row-major."""
    x = x.unflatten(2, (-1, window)).unflatten(1, (-1, window)).transpose(2, 3)  # [B, nh, nw, M, M, C]
    return x.flatten(3, 4).flatten(1, 2)


def window_merge(windows: Tensor, window: int, hp: int | Tensor, wp: int | Tensor) -> Tensor:
    """Inverse of :func:`window_partition`: ``[B, nW, window*window, C]`` -> ``[B, Hp, Wp, C]``."""
    x = windows.unflatten(2, (window, window)).unflatten(1, (hp // window, wp // window))  # [B, nh, nw, M, M, C]
    return x.transpose(2, 3).flatten(3, 4).flatten(1, 2)


def shift_mask(hp: int | Tensor, wp: int | Tensor, window: int, shift: int, like: Tensor) -> Tensor:
    """``[nW, N, N]`` additive mask of shifted-window attention over a padded ``hp x wp`` map (paper sec. 3.2).

    After the cyclic shift by ``shift``, the last window of each axis holds tokens from up to three regions that
    were not neighbours (``[0, hp-window)``, ``[hp-window, hp-shift)``, ``[hp-shift, hp)``); pairs from different
    regions get -100 as in the release (not -inf; exp(-100) ~ 4e-44 is negligible beside the other logits)."""
    def region(n: int | Tensor) -> Tensor:
        i = torch.arange(n, device=like.device)
        return (i >= n - window).long() + (i >= n - shift).long()

    label = region(hp)[:, None] * 3 + region(wp)[None, :]  # [Hp, Wp]
    win = window_partition(label[None, :, :, None], window)[0, :, :, 0]  # [nW, N]
    return (win[:, None, :] != win[:, :, None]).to(like.dtype) * -100.0


def drop_path(x: Tensor, rate: float, training: bool) -> Tensor:
    """Stochastic depth (Huang et al. 2016): drop the residual branch ``x [B, ...]`` of whole samples with
    probability ``rate`` and scale the kept ones by 1 / (1 - rate); identity in eval (timm's ``DropPath``)."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask.div_(keep)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window with a learned relative position bias (paper eq. 4).

    ``[B, Hp, Wp, C]`` (padded to whole windows) -> ``[B, Hp, Wp, C]``.
    """

    def __init__(self, dim: int, num_heads: int, window: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads, self.window = num_heads, window
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """x: ``[B, Hp, Wp, C]``; mask: ``[nW, N, N]`` additive (shifted blocks) or None."""
        hp, wp = x.shape[1], x.shape[2]
        win = window_partition(x, self.window)  # [B, nW, N, C]
        qkv = self.qkv(win).unflatten(-1, (3, self.num_heads, -1)).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv.unbind(0)  # each [B, nW, heads, N, C / heads]
        attn = (q * self.scale) @ k.transpose(-2, -1)  # [B, nW, heads, N, N]
        n = self.window * self.window
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1)
        if mask is not None:
            attn = attn + mask[:, None]
        out = (attn.softmax(-1) @ v).transpose(2, 3).flatten(-2)  # [B, nW, N, C]
        return window_merge(self.proj(out), self.window, hp, wp)


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2, ``[..., C] -> [..., C]``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    """Pre-norm (shifted-)window attention and MLP, each with a residual (paper eq. 3). ``[B, H, W, C]`` ->
    ``[B, H, W, C]``; ``shift`` 0 is W-MSA, ``window // 2`` SW-MSA."""

    def __init__(self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: float, qkv_bias: bool,
                 drop_path_rate: float) -> None:
        super().__init__()
        self.window, self.shift, self.drop_path_rate = window, shift, drop_path_rate
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        h, w = x.shape[1], x.shape[2]
        # The release pads after norm1, so the padding tokens are zeros that every window attends to.
        y = F.pad(self.norm1(x), (0, 0, 0, (-w) % self.window, 0, (-h) % self.window))
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), (1, 2))
        y = self.attn(y, mask if self.shift else None)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), (1, 2))
        x = x + drop_path(y[:, :h, :w], self.drop_path_rate, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path_rate, self.training)


class PatchMerging(nn.Module):
    """2 x 2 neighbours concatenated, normalised and projected: ``[B, H, W, C] -> [B, ceil(H/2), ceil(W/2), 2C]``
    (odd sizes padded by one zero row / column, as the release does)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, (0, 0, 0, x.shape[2] % 2, 0, x.shape[1] % 2))
        # channel order of the release: (even row, even col), (odd, even), (even, odd), (odd, odd)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """``depth`` blocks alternating W-MSA and SW-MSA, then (except after the last stage) a PatchMerging.

    ``forward``: ``[B, H, W, C]`` -> (this stage's map ``[B, H, W, C]``, the next stage's input
    ``[B, ceil(H/2), ceil(W/2), 2C]`` or None). ``checkpoint_blocks``: recompute each block in the backward pass.
    """

    def __init__(self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float, qkv_bias: bool,
                 drop_path_rates: Sequence[float], downsample: bool, checkpoint_blocks: bool = False) -> None:
        super().__init__()
        self.window, self.shift = window, window // 2
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window, 0 if i % 2 == 0 else self.shift, mlp_ratio, qkv_bias, drop_path_rates[i])
            for i in range(depth))
        self.downsample = PatchMerging(dim) if downsample else None
        self.checkpoint_blocks = checkpoint_blocks

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        h, w = x.shape[1], x.shape[2]
        mask = None
        if self.shift and len(self.blocks) > 1:  # one mask per stage: every shifted block pads to the same size
            mask = shift_mask(h + (-h) % self.window, w + (-w) % self.window, self.window, self.shift, x)
        for block in self.blocks:
            x = run_layer(block, self.checkpoint_blocks, x, mask)
        return x, (self.downsample(x) if self.downsample is not None else None)


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch x patch`` patches projected to ``embed_dim``: ``[B, 3, H, W]`` ->
    ``[B, ceil(H/patch), ceil(W/patch), embed_dim]`` (the image zero-padded right/bottom first)."""

    def __init__(self, patch: int, embed_dim: int, norm: bool) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(3, embed_dim, patch, stride=patch)
        self.norm = nn.LayerNorm(embed_dim) if norm else None

    def forward(self, images: Tensor) -> Tensor:
        h, w = images.shape[-2], images.shape[-1]
        x = self.proj(F.pad(images, (0, (-w) % self.patch, 0, (-h) % self.patch))).permute(0, 2, 3, 1)
        return self.norm(x) if self.norm is not None else x


class SwinBackbone(nn.Module):
    """Swin Transformer feature extractor with our backbones' interface: selected levels with their masks.

    State-dict keys are detectron2's (see the module docstring). Stages past the deepest returned level are not
    built (nothing without a gradient under DDP).

    Args:
        embed_dim: channels of stage 0 (level 2); stage s has ``embed_dim * 2**s``.
        depths, num_heads: blocks and attention heads of each stage (4 entries; fewer stages are built when
            ``return_levels`` stops earlier).
        window_size: M, the window side in tokens (7 for the 224-pixel ImageNet models, 12 for the 384 ones).
        mlp_ratio: MLP hidden width / dim.
        drop_path_rate: stochastic depth of the last block; rates rise linearly from 0 over all blocks
            (``linspace(0, rate, sum(depths))``, also over stages not built).
        return_levels: stride exponents from {2, 3, 4, 5} (detectron2's p0..p3), each through its own output
            LayerNorm ``norm{level - 2}``; returned in ascending order.
        frozen_stages: 0 nothing frozen, 1 the patch embedding, k >= 2 also stages 0..k-2 (levels 2..k) with their
            PatchMerging; detectron2's ``frozen_stages`` for k >= 1 (its -1 is our 0). Output norms stay trainable.
        checkpoint_levels: levels whose stage recomputes each block in the backward pass (activation
            checkpointing, as the release's ``use_checkpoint``; memory for time).
        qkv_bias: bias on the fused q/k/v projection.
        patch_size: side of the patches of the stem (4 in every release; strides are ``patch_size * 2**s``).
        patch_norm: LayerNorm after the patch projection.
    """

    def __init__(self, *, embed_dim: int = 96, depths: Sequence[int] = (2, 2, 6, 2),
                 num_heads: Sequence[int] = (3, 6, 12, 24), window_size: int = 7, mlp_ratio: float = 4.0,
                 drop_path_rate: float = 0.2, return_levels: Sequence[int] = (3, 4, 5), frozen_stages: int = 0,
                 checkpoint_levels: Sequence[int] = (), qkv_bias: bool = True, patch_size: int = 4,
                 patch_norm: bool = True) -> None:
        super().__init__()
        levels = sorted(set(return_levels))
        if not levels or any(lvl not in LEVELS for lvl in levels):
            raise ValueError(f"backbone return_levels must be a non-empty subset of {list(LEVELS)}, "
                             f"got {list(return_levels)}")
        if len(depths) != len(LEVELS) or len(num_heads) != len(LEVELS):
            raise ValueError(f"Swin needs 4 depths and 4 head counts, got {list(depths)} and {list(num_heads)}")
        if any(embed_dim * 2**s % h for s, h in enumerate(num_heads)):
            raise ValueError(f"Swin stage widths {[embed_dim * 2**s for s in range(4)]} must be divisible by "
                             f"num_heads {list(num_heads)}")
        if not 0 <= frozen_stages <= 5:
            raise ValueError(f"backbone frozen_stages must be in 0..5, got {frozen_stages}")
        if any(lvl not in LEVELS for lvl in checkpoint_levels):
            raise ValueError(f"backbone checkpoint_levels must be a subset of {list(LEVELS)}, got {list(checkpoint_levels)}")
        self.return_levels = tuple(levels)
        num_stages = levels[-1] - 1
        # Stochastic depth rises linearly over all blocks of the full network (detectron2's "decay rule").
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        self.patch_embed = PatchEmbed(patch_size, embed_dim, patch_norm)
        self.layers = nn.ModuleList(
            SwinStage(embed_dim * 2**s, depths[s], num_heads[s], window_size, mlp_ratio, qkv_bias,
                      rates[sum(depths[:s]):sum(depths[:s + 1])], downsample=s < num_stages - 1,
                      checkpoint_blocks=s + 2 in checkpoint_levels)
            for s in range(num_stages))
        for lvl in levels:
            self.add_module(f"norm{lvl - 2}", nn.LayerNorm(embed_dim * 2 ** (lvl - 2)))
        self.channels = [embed_dim * 2 ** (lvl - 2) for lvl in levels]
        self.strides = [patch_size * 2 ** (lvl - 2) for lvl in levels]
        self.apply(_init_weights)
        for stage in [self.patch_embed, *self.layers][:frozen_stages]:
            stage.requires_grad_(False)

    def features(self, images: Tensor) -> dict[int, Tensor]:
        """``[B, 3, H, W]`` normalised images -> ``{level: [B, C, h, w]}`` for the returned levels (the maps are
        views of channels-last tensors)."""
        x: Tensor | None = self.patch_embed(images)
        out: dict[int, Tensor] = {}
        for s, stage in enumerate(self.layers):
            y, x = stage(x)
            if s + 2 in self.return_levels:
                out[s + 2] = getattr(self, f"norm{s}")(y).permute(0, 3, 1, 2)
        return out

    def forward(self, images: Tensor, pixel_mask: Tensor) -> list[tuple[Tensor, Tensor]]:
        """``images [B, 3, H, W]``, ``pixel_mask [B, H, W]`` True on padding -> ``(feature, mask)`` per level."""
        return level_outputs(self.features, self.return_levels, images, pixel_mask)


def _init_weights(m: nn.Module) -> None:
    # The release's init (for training without ImageNet weights): truncated normal(0.02) linear weights and
    # bias tables, zero biases, unit LayerNorms; the patch projection keeps Conv2d's default.
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, WindowAttention):
        nn.init.trunc_normal_(m.relative_position_bias_table, std=0.02)
