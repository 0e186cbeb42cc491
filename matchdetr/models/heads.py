"""Class and box heads applied to every decoder layer's output (and to encoder proposals)."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from ..boxes import apply_box_delta
from ..structures import Prediction
from .layers import MLP


class DetectionHead(nn.Module):
    """Per-layer class logits and boxes.

    num_heads: 1 shares one class/box head across layers (DETR, plain Deformable-DETR); > 1 gives each
    layer its own (box refinement, DINO); one more than the decoder layers adds the encoder-proposal head of
    two-stage models (index ``num_heads - 1``).
    share_class: with per-layer box heads, keep one class head for all layers.
    Boxes are ``sigmoid(MLP(h))`` without a reference and ``sigmoid(MLP(h) + logit(reference))`` with one
    (a 2-d reference point only shifts the centre), Deformable-DETR sec 4.1.
    """

    def __init__(self, dim: int, num_classes: int, num_heads: int = 1, prior_prob: float = 0.01,
                 share_class: bool = False, zero_box_init: bool = False) -> None:
        super().__init__()
        self.class_embed = nn.ModuleList(nn.Linear(dim, num_classes) for _ in range(1 if share_class else num_heads))
        self.bbox_embed = nn.ModuleList(MLP(dim, dim, 4, 3) for _ in range(num_heads))
        # Focal-loss prior (Lin et al. 2017, sec 4.1): every class starts at probability prior_prob, so the
        # background-dominated loss does not blow up in the first iterations.
        bias = -math.log((1 - prior_prob) / prior_prob)
        for cls in self.class_embed:
            nn.init.constant_(cls.bias, bias)
        if zero_box_init:  # Deformable-DETR: the first boxes equal the references
            for box in self.bbox_embed:
                nn.init.zeros_(box.layers[-1].weight)
                nn.init.zeros_(box.layers[-1].bias)

    @property
    def proposal_entry(self) -> int:
        """The entry that scores the encoder's proposals (two-stage / query selection): the last one (the extra
        entry after the decoder layers', or the one shared entry)."""
        return len(self.bbox_embed) - 1

    def box_delta(self, layer: int, hidden: Tensor) -> Tensor:
        """Box branch of ``layer`` (logit space), ``[..., d] -> [..., 4]``; also drives box refinement."""
        return self.bbox_embed[layer if len(self.bbox_embed) > 1 else 0](hidden)

    def classify(self, layer: int, hidden: Tensor) -> Tensor:
        return self.class_embed[layer if len(self.class_embed) > 1 else 0](hidden)

    def predict(self, layer: int, hidden: Tensor, reference: Tensor | None) -> Prediction:
        delta = self.box_delta(layer, hidden)
        boxes = torch.sigmoid(delta) if reference is None else apply_box_delta(reference, delta)
        return Prediction(logits=self.classify(layer, hidden), boxes=boxes)

    def forward(self, hidden: Tensor, references: Sequence[Tensor] | None = None, memory: object = None) -> list[Prediction]:
        """hidden: ``[L, B, Q, d]``; references: L tensors ``[B, Q, 2|4]`` or None -> L predictions. ``memory``
        is for heads that read it (masks); unused here."""
        return [self.predict(i, h, None if references is None else references[i]) for i, h in enumerate(hidden)]
