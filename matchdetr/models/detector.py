"""The one Detector: backbone -> input projection -> encoder -> (fusion) -> queries -> decoder -> heads.

Every model of the library is this class with different parts; a variant is a preset that picks the parts
(``matchdetr/compose/``), never a subclass or a flag inside a shared layer.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

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
    queries: ``(Memory, targets) -> Queries`` (learned queries, anchors, query selection, denoising).
    decoder: ``(Queries, Memory) -> DecoderOutput``.
    head: ``(hidden, references, memory) -> [Prediction per layer]`` (a mask head reads the memory).
    size_divisibility: the input (and its padding mask) is first zero-padded to a multiple of this in H and W
        (the Mask-DINO release: 32); 1 leaves it as given.
    padding_is_content: the parts see no padding mask, so the padding is image content to the encoder, the
        query selection and the decoder, and boxes are predicted on the padded input (the Mask-DINO release,
        ``padding.py``); they are still returned, and the ground truth still given, on each valid image.
        False (every other family): the padding is masked out.
    """

    # predict() and save() decode images and write checkpoint files, the work of layers above the models:
    # matchdetr.api registers its two functions here when it is imported (matchdetr.build and matchdetr.load
    # import it), so models/ never imports upwards (tests/test_import_graph.py).
    conveniences: ClassVar[dict[str, Callable[..., Any]]] = {}

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
        # Set by matchdetr.build / matchdetr.load: what save() needs to rebuild the model, the
        # matchdetr.config.Config it was built from and its matchdetr.data.coco.LabelMap.
        self.config: Any = None
        self.label_map: Any = None

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
        queries = self.queries(memory, targets if self.training else None)
        decoded = self.decoder(queries, memory)
        preds = self.head(decoded.hidden, decoded.references, memory)
        out = DetectorOutput(logits=preds[-1].logits, boxes=preds[-1].boxes, aux=preds[:-1], masks=preds[-1].masks)
        for finalize in queries.finalize:
            finalize(out)
        if fraction is not None:
            outputs_on_valid_image(out, fraction)
        return out

    # ------------------------------------------------------------------ user-facing helpers (see api.py)
    def predict(self, images: Any, threshold: float = 0.3, batch_size: int = 4) -> list[dict[str, Any]]:
        """Detect objects in image paths, PIL images or HxWx3 uint8 arrays; see :func:`matchdetr.api.predict`."""
        return self._convenience("predict")(self, images, threshold=threshold, batch_size=batch_size)

    def save(self, path: str) -> None:
        """Write weights plus everything needed to rebuild the model to one safetensors file
        (:func:`matchdetr.api.save`)."""
        self._convenience("save")(self, path)

    def _convenience(self, name: str) -> Callable[..., Any]:
        if name not in self.conveniences:
            raise RuntimeError(f"Detector.{name} needs matchdetr.api: create the model with matchdetr.build or "
                               "matchdetr.load")
        return self.conveniences[name]
