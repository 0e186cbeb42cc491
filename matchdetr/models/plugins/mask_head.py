"""Mask-DINO's prediction heads (sec 3.2, the release's ``forward_prediction_heads``): the detection head's
class and box branches plus a mask branch, the same for every decoder layer, the initial queries and the
encoder proposals.

    mask_q = MLP_3(LN(h_q)) . pixel_embed          ([B, Q, d] x [B, d, H/4, W/4] -> [B, Q, H/4, W/4])

Class logits read ``LN(h)`` too, boxes the decoder output itself. The release applies its decoder's final
LayerNorm a second time here; this head has its own LayerNorm (identity at initialisation, where LN(LN(x)) =
LN(x)), so the decoder's norm stays unshared: safetensors files hold no tensor twice.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn

from ...boxes import apply_box_delta
from ...structures import Prediction
from ..heads import DetectionHead
from ..layers import MLP
from ..memory import Memory


class MaskHead(nn.Module):
    """Class, box and mask predictions per layer; ``detection`` holds the class/box branches (its entry
    ``layer`` as in :class:`DetectionHead`)."""

    predicts_masks = True  # Detector.predicts_masks: the outputs carry mask logits

    def __init__(self, detection: DetectionHead, dim: int, mask_dim: int) -> None:
        super().__init__()
        self.detection = detection
        self.every_layer_masks = False  # in eval too (see forward and every_layer_masks below)
        self.norm = nn.LayerNorm(dim)
        self.mask_embed = MLP(dim, dim, mask_dim, 3)

    @property
    def proposal_entry(self) -> int:
        return self.detection.proposal_entry

    def box_delta(self, layer: int, hidden: Tensor) -> Tensor:
        return self.detection.box_delta(layer, hidden)

    def classify(self, layer: int, hidden: Tensor) -> Tensor:
        return self.detection.classify(layer, self.norm(hidden))

    def masks(self, hidden: Tensor, memory: Memory) -> Tensor:
        """hidden ``[B, Q, d]`` -> mask logits ``[B, Q, H/4, W/4]`` on ``memory.pixel_embed``."""
        if memory.pixel_embed is None:
            raise ValueError("MaskHead needs Memory.pixel_embed: add the PixelEmbedding plug-in")
        return torch.einsum("bqc,bchw->bqhw", self.mask_embed(self.norm(hidden)), memory.pixel_embed)

    def predict(self, layer: int, hidden: Tensor, reference: Tensor | None, memory: Memory,
                with_masks: bool = True) -> Prediction:
        delta = self.box_delta(layer, hidden)
        boxes = torch.sigmoid(delta) if reference is None else apply_box_delta(reference, delta)
        return Prediction(logits=self.classify(layer, hidden), boxes=boxes,
                          masks=self.masks(hidden, memory) if with_masks else None)

    def forward(self, hidden: Tensor, references: Sequence[Tensor] | None = None,
                memory: Memory | None = None) -> list[Prediction]:
        """hidden ``[L, B, Q, d]``, references: L ``[B, Q, 4]`` -> L predictions, with masks in training and
        for the last layer in eval.

        Only the losses read the earlier layers' masks (one ``[B, Q, H/4, W/4]`` map each: 80 MB per image and
        layer for 300 queries at 800x1333), so in eval they are not computed; their classes and boxes stay
        (the unstable score reads them, inside :func:`every_layer_masks` when its matcher has mask costs)."""
        if memory is None:
            raise ValueError("MaskHead needs the memory (its pixel embedding)")
        every, last = self.training or self.every_layer_masks, len(hidden) - 1
        return [self.predict(i, h, None if references is None else references[i], memory, every or i == last)
                for i, h in enumerate(hidden)]


@contextmanager
def every_layer_masks(model: nn.Module) -> Iterator[None]:
    """Within the block, every :class:`MaskHead` in ``model`` predicts every layer's masks in eval too (for
    diagnostics that match each layer as training does, with the mask costs)."""
    heads = [m for m in model.modules() if isinstance(m, MaskHead)]
    before = [h.every_layer_masks for h in heads]
    for h in heads:
        h.every_layer_masks = True
    try:
        yield
    finally:
        for h, b in zip(heads, before):
            h.every_layer_masks = b
