"""Class and box heads applied to every decoder layer's output."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..boxes import inverse_sigmoid
from ..structures import Prediction
from .layers import MLP


class DetectionHead(nn.Module):
    """Per-layer class logits and boxes.

    num_heads: 1 shares one class/box head across layers (DETR); > 1 gives each layer its own (DINO).
    Boxes are ``sigmoid(MLP(h))`` without a reference, and ``sigmoid(MLP(h) + logit(reference))`` with one
    (iterative refinement in unbounded space, Deformable-DETR sec 4.1).
    """

    def __init__(self, dim: int, num_classes: int, num_heads: int = 1, prior_prob: float = 0.01) -> None:
        super().__init__()
        self.class_embed = nn.ModuleList(nn.Linear(dim, num_classes) for _ in range(num_heads))
        self.bbox_embed = nn.ModuleList(MLP(dim, dim, 4, 3) for _ in range(num_heads))
        # Focal-loss prior (Lin et al. 2017, sec 4.1): every class starts at probability prior_prob, so the
        # background-dominated loss does not blow up in the first iterations.
        bias = -math.log((1 - prior_prob) / prior_prob)
        for cls in self.class_embed:
            nn.init.constant_(cls.bias, bias)

    def _pick(self, layer: int) -> tuple[nn.Module, nn.Module]:
        i = layer if len(self.class_embed) > 1 else 0
        return self.class_embed[i], self.bbox_embed[i]

    def forward(self, hidden: Tensor, references: Tensor | None = None) -> list[Prediction]:
        """hidden: ``[L, B, Q, d]``; references: ``[L, B, Q, 4]`` or None -> L predictions."""
        out = []
        for layer, h in enumerate(hidden):
            cls, box = self._pick(layer)
            delta = box(h)
            if references is not None:
                delta = delta + inverse_sigmoid(references[layer])
            out.append(Prediction(logits=cls(h), boxes=torch.sigmoid(delta)))
        return out
