"""The one Detector: backbone -> input projection -> encoder -> (fusion) -> queries -> decoder -> heads.

Every model of the library is this class with different parts; a variant is a preset that picks the parts
(``matchdetr/compose/``), never a subclass or a flag inside a shared layer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..structures import DetectorOutput, Target
from .padding import outputs_on_valid_image, pad_to_multiple, targets_on_padded_input, valid_fraction
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
    size_divisibility: the input (and its padding mask) is first zero-padded to a multiple of this in H and W
        (the Mask-DINO release: 32); 1 leaves it as given.
    padding_is_content: the parts see no padding mask, so the padding is image content to the encoder, the
        query selection and the decoder, and boxes are predicted on the padded input (the Mask-DINO release,
        ``padding.py``); they are still returned, and the ground truth still given, on each valid image.
        False (every other family): the padding is masked out.
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
        size_divisibility: int = 1,
        padding_is_content: bool = False,
    ) -> None:
        super().__init__()
        self.size_divisibility, self.padding_is_content = size_divisibility, padding_is_content
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
        images, pixel_mask = pad_to_multiple(images, pixel_mask, self.size_divisibility)
        fraction = None
        if self.padding_is_content:
            fraction = valid_fraction(pixel_mask, images.dtype)
            pixel_mask = torch.zeros_like(pixel_mask)
            targets = None if targets is None else targets_on_padded_input(targets, fraction)
        memory = self.fusion(self.encoder(self.neck(self.backbone(images, pixel_mask), pixel_mask)))
        queries = self.queries(memory, targets if self.training else None, self.head)
        decoded = self.decoder(queries, memory)
        preds = self.head(decoded.hidden, decoded.references, memory)
        # what the criterion supervises, explicitly: the matching queries, each plug-in span, the proposals
        out = DetectorOutput.from_layers(preds, queries.before, queries.after, queries.proposals)
        if fraction is not None:
            outputs_on_valid_image(out, fraction)
        return out
