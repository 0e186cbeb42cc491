"""Initialisation passes that the releases run over a whole transformer after building it.

DETR and its forks (SAM-DETR among them) end ``Transformer.__init__`` with ``_reset_parameters``: Xavier-uniform
on every parameter with more than one dimension, then the modules with their own rule (multi-scale deformable
attention) re-initialised. Biases keep their constructor's initialisation, except that the attention output
projections start at zero (``nn.MultiheadAttention`` and Conditional-DETR's attention both zero them).
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from .attention import MultiheadAttention
from .deformable_attention import MSDeformAttn


def _out_projections(module: nn.Module) -> Iterable[nn.Linear]:
    """The output projections of every attention inside ``module`` (ours are all called ``out_proj``)."""
    for name, sub in module.named_modules():
        if name.split(".")[-1] == "out_proj" and isinstance(sub, nn.Linear):
            yield sub


@torch.no_grad()
def xavier_transformer_(modules: Iterable[nn.Module]) -> None:
    """The release's pass, in place, over ``modules`` (e.g. the encoder and the decoder layers).

    - Xavier-uniform on every weight matrix. A :class:`MultiheadAttention`'s q/k/v projections are drawn as the one
      stacked ``[3d, d]`` ``in_proj_weight`` of ``nn.MultiheadAttention`` that the release initialises (fan
      ``d + 3d``), then split, so their spread is the release's.
    - Multi-scale deformable attention back to its own initialisation (fixed sampling pattern, zero attention).
    - Zero bias on every attention output projection.
    """
    for module in modules:
        for p in module.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for sub in module.modules():
            if isinstance(sub, MultiheadAttention):
                stacked = torch.empty(3 * sub.embed_dim, sub.embed_dim, dtype=sub.q_proj.weight.dtype)
                nn.init.xavier_uniform_(stacked)
                for proj, part in zip((sub.q_proj, sub.k_proj, sub.v_proj), stacked.chunk(3, 0)):
                    proj.weight.copy_(part)
            elif isinstance(sub, MSDeformAttn):
                sub._reset_parameters()
        for proj in _out_projections(module):
            nn.init.zeros_(proj.bias)
