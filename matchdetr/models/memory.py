"""The token sequence an encoder produces and every later part (fusion, query selection, decoder) reads.

Single-scale (DETR) and multi-scale (Deformable-DETR) encoders share this one structure, so decoders and
plug-ins never need to know which encoder ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor


@dataclass
class Memory:
    """Flattened multi-level feature tokens.

    tokens: ``[B, S, d]`` with ``S = sum_l h_l * w_l``, levels concatenated coarse-or-fine in input order.
    mask: ``[B, S]`` bool, True on padding.
    pos: ``[B, S, d]`` positional embedding (level embedding included where the model has one).
    spatial_shapes: ``[L, 2]`` int64 ``(h_l, w_l)``; ``shapes`` holds the same as Python ints, so code that
        needs sizes on the host never reads them back from the device (under ONNX tracing: traced 0-dim
        tensors, so an exported graph follows the input size).
    level_start: ``[L]`` int64 offset of each level in ``S``.
    valid_ratios: ``[B, L, 2]`` the unpadded fraction ``(w, h)`` of each level's map.
    layers: every encoder layer's input and output ``[x0, x1, ..., xL]`` (each ``[B, S, d]``), kept only when a
        plug-in (memory fusion, the unstable score) asks for them.
    cache: values derived from the geometry alone (e.g. encoder reference points), computed once per forward.
    fine: ``[B, d, H/4, W/4]`` the stride-4 backbone map projected to ``d`` (Mask-DINO's C2 lateral), carried
        beside the tokens for a dense head and never attended; None for detection models.
    pixel_embed: ``[B, d_mask, H/4, W/4]`` the per-pixel embedding masks are read from (Mask-DINO's pixel
        decoder output), or None.
    """

    tokens: Tensor
    mask: Tensor
    pos: Tensor
    spatial_shapes: Tensor
    level_start: Tensor
    valid_ratios: Tensor
    shapes: list[tuple[int, int]] = field(default_factory=list)
    layers: list[Tensor] = field(default_factory=list)
    cache: dict[str, Tensor] = field(default_factory=dict)
    fine: Tensor | None = None
    pixel_embed: Tensor | None = None

    def with_tokens(self, tokens: Tensor) -> "Memory":
        return replace(self, tokens=tokens)

    def _span(self, index: int) -> slice:
        h, w = self.shapes[index]
        start = sum(a * b for a, b in self.shapes[:index])
        return slice(start, start + h * w)

    def _as_map(self, x: Tensor, index: int) -> Tensor:
        h, w = self.shapes[index]
        return x[:, self._span(index)].transpose(1, 2).reshape(x.shape[0], -1, h, w)

    def token_map(self, index: int) -> Tensor:
        """Level ``index``'s tokens back as a map ``[B, d, h, w]`` (no positions)."""
        return self._as_map(self.tokens, index)

    def level_mask(self, index: int) -> Tensor:
        """Level ``index``'s padding mask ``[B, h, w]``."""
        h, w = self.shapes[index]
        return self.mask[:, self._span(index)].reshape(self.mask.shape[0], h, w)

    def level(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        """One level back as maps: tokens ``[B, d, h, w]``, mask ``[B, h, w]``, pos ``[B, d, h, w]``."""
        return self.token_map(index), self.level_mask(index), self._as_map(self.pos, index)

    def select_level(self, index: int) -> "Memory":
        """A single-level Memory of level ``index``: its token, mask and position slices (views, no copies) and
        its geometry; encoder layers and the cache are not carried (they describe the whole memory)."""
        if len(self.shapes) == 1:
            return self
        sl = self._span(index)
        return Memory(tokens=self.tokens[:, sl], mask=self.mask[:, sl], pos=self.pos[:, sl],
                      spatial_shapes=self.spatial_shapes[index:index + 1], level_start=self.level_start[:1],  # 0
                      valid_ratios=self.valid_ratios[:, index:index + 1], shapes=[self.shapes[index]])


def flatten_levels(features: list[Tensor], masks: list[Tensor], pos: list[Tensor]) -> Memory:
    """Flatten per-level maps ``[B, d, h, w]`` / masks ``[B, h, w]`` / pos ``[B, d, h, w]`` into a Memory."""
    shapes = [f.shape[-2:] for f in features]
    device = features[0].device
    if torch.jit.is_tracing():
        # ONNX export: sizes as traced tensors (int() or torch.tensor would freeze the sample's sizes into
        # constants); Memory.shapes then holds 0-dim tensors, which every user of it accepts.
        spatial_shapes = torch.stack([torch._shape_as_tensor(f)[-2:] for f in features]).to(device)
        shapes = [(hw[0], hw[1]) for hw in spatial_shapes]
    else:
        spatial_shapes = torch.tensor([list(s) for s in shapes], dtype=torch.long, device=device)
        shapes = [(int(h), int(w)) for h, w in shapes]
    sizes = spatial_shapes.prod(1)
    level_start = torch.cat((sizes.new_zeros(1), sizes.cumsum(0)[:-1]))
    # float32 at least (a half-precision ratio such as 173/200 is off by 1e-3), float64 for float64 features
    valid_ratios = torch.stack([_valid_ratio(m) for m in masks], 1).to(torch.promote_types(features[0].dtype, torch.float32))
    return Memory(
        tokens=torch.cat([f.flatten(2).transpose(1, 2) for f in features], 1),
        mask=torch.cat([m.flatten(1) for m in masks], 1),
        pos=torch.cat([p.flatten(2).transpose(1, 2) for p in pos], 1),
        spatial_shapes=spatial_shapes,
        level_start=level_start,
        valid_ratios=valid_ratios,
        shapes=shapes,
    )


def _valid_ratio(mask: Tensor) -> Tensor:
    """``[B, h, w]`` padding mask -> ``[B, 2]`` fraction of valid width and height."""
    _, h, w = mask.shape
    valid_h = (~mask[:, :, 0]).sum(1)
    valid_w = (~mask[:, 0, :]).sum(1)
    return torch.stack((valid_w.float() / w, valid_h.float() / h), -1)
