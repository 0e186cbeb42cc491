"""The one Detector: backbone -> input projection -> encoder -> (fusion) -> queries -> decoder -> heads.

Every model of the library is this class with different parts; a variant is a preset that picks the parts
(``matchdetr/compose/``), never a subclass or a flag inside a shared layer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..structures import DetectorOutput, Target
from .postprocess import PostProcessor


class Detector(nn.Module):
    """A DETR-family detector composed from parts.

    backbone: ``(images [B,3,H,W], mask [B,H,W]) -> [(map, mask), ...]`` per level.
    neck: levels -> :class:`~matchdetr.models.memory.Memory` (projection + positions).
    encoder: Memory -> Memory.
    fusion: Memory -> Memory (memory fusion plug-in; identity by default).
    queries: ``(Memory, targets, head) -> Queries`` (learned queries, anchors, query selection, denoising).
    decoder: ``(Queries, Memory) -> DecoderOutput``.
    head: ``(hidden, references, memory) -> [Prediction per layer]`` (a mask head reads the memory).
    """

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        encoder: nn.Module,
        queries: nn.Module,
        decoder: nn.Module,
        head: nn.Module,
        postprocessor: PostProcessor,
        fusion: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.backbone, self.neck, self.encoder = backbone, neck, encoder
        self.fusion = fusion if fusion is not None else nn.Identity()
        self.queries, self.decoder, self.head = queries, decoder, head
        self.postprocessor = postprocessor

    @property
    def predicts_masks(self) -> bool:
        """Whether the outputs carry instance masks (a head with a mask branch, Mask-DINO's)."""
        return bool(getattr(self.head, "predicts_masks", False))

    def forward(
        self, images: Tensor, pixel_mask: Tensor | None = None, targets: list[Target] | None = None
    ) -> DetectorOutput:
        """images: ``[B, 3, H, W]`` normalised; pixel_mask: ``[B, H, W]`` bool, True on padding.

        targets: the ground truth, needed only by training-time plug-ins (denoising); ignored otherwise.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {list(images.shape)}")
        if pixel_mask is None:
            pixel_mask = torch.zeros(images.shape[0], *images.shape[-2:], dtype=torch.bool, device=images.device)
        memory = self.fusion(self.encoder(self.neck(self.backbone(images, pixel_mask), pixel_mask)))
        queries = self.queries(memory, targets if self.training else None, self.head)
        decoded = self.decoder(queries, memory)
        preds = self.head(decoded.hidden, decoded.references, memory)
        # what the criterion supervises, explicitly: the matching queries, each plug-in span, the proposals
        return DetectorOutput.from_layers(preds, queries.before, queries.after, queries.proposals)
