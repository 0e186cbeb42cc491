"""Data structures that cross module boundaries.

Box convention, used by every structure here and every module that takes boxes: normalised ``(cx, cy, w, h)``
in ``[0, 1]`` of the valid (unpadded) image. Only :class:`Detections` holds absolute ``(x0, y0, x1, y1)``
pixels of the original image.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

# Prediction.masks are at 1/4 of the padded batch image (Mask-DINO's per-pixel embedding map, stride 4): a mask
# loss or cost places the ground truth on a canvas of MASK_STRIDE * (H/4, W/4) pixels to compare the two.
MASK_STRIDE = 4


@dataclass
class Target:
    """Ground truth of one image, after data transforms.

    boxes: ``[N, 4]`` float, normalised cxcywh of the transformed, unpadded image.
    labels: ``[N]`` int64, contiguous model labels ``0..C-1`` (see ``data.coco.LabelMap``).
    image_id: the dataset's image id.
    orig_size: ``(h, w)`` of the image as stored on disk (after EXIF orientation).
    size: ``(h, w)`` of the transformed image before padding.
    readable: False for the stand-in of an image that could not be decoded in an evaluation dataset (a blank
        image with no boxes): scoring code drops its detections, so it counts as an image without any.
    masks: ``[N, h, w]`` bool instance masks at ``size`` (the transformed, unpadded image), or None where the
        dataset was read without masks (box detection).
    """

    boxes: Tensor
    labels: Tensor
    image_id: int
    orig_size: tuple[int, int]
    size: tuple[int, int]
    readable: bool = True
    masks: Tensor | None = None

    def to(self, device: torch.device | str) -> "Target":
        masks = None if self.masks is None else self.masks.to(device)
        return replace(self, boxes=self.boxes.to(device), labels=self.labels.to(device), masks=masks)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def repeated(self, k: int) -> "Target":
        """The ground truth written out ``k`` times (H-DETR's one-to-many targets); ``self`` when k == 1."""
        if k == 1:
            return self
        masks = None if self.masks is None else self.masks.repeat(k, 1, 1)
        return replace(self, boxes=self.boxes.repeat(k, 1), labels=self.labels.repeat(k), masks=masks)


@dataclass
class Prediction:
    """One set of per-query predictions (one decoder layer, the encoder proposals, a branch).

    logits: ``[B, Q, C]`` class logits (sigmoid scores; no "no-object" class).
    boxes: ``[B, Q, 4]`` normalised cxcywh.
    masks: ``[B, Q, H/4, W/4]`` mask logits over the padded batch at stride 4 (instance segmentation), or None.
    """

    logits: Tensor
    boxes: Tensor
    masks: Tensor | None = None

    def select(self, queries: slice) -> "Prediction":
        """The predictions of a slice of the queries."""
        return Prediction(self.logits[:, queries], self.boxes[:, queries],
                          None if self.masks is None else self.masks[:, queries])


@dataclass
class Assignment:
    """A fixed query-to-GT assignment per image, for outputs supervised without matching (denoising).

    Each element is ``(query_idx [K], gt_idx [K])`` int64 tensors; queries not listed are background.
    """

    indices: list[tuple[Tensor, Tensor]]


@dataclass
class Supervised:
    """One prediction set the criterion must supervise.

    suffix: appended to every loss key (``""``, ``"_aux0"``, ``"_enc"``, ``"_dn"``, ``"_o2m"``, ...).
    prediction: the outputs to supervise.
    assignment: ``None`` to match with the Hungarian matcher, or a fixed :class:`Assignment`.
    target_repeat: match and score against the ground truth repeated this many times (H-DETR's one-to-many branch).
    weight: multiplies every loss of this set.
    num_boxes_factor: the normaliser is ``num_boxes * num_boxes_factor`` (denoising groups).
    class_agnostic: every GT counts as class 0 (Deformable-DETR's two-stage proposals are foreground /
        background only).
    """

    suffix: str
    prediction: Prediction
    assignment: Assignment | None = None
    target_repeat: int = 1
    weight: float = 1.0
    num_boxes_factor: float = 1.0
    class_agnostic: bool = False


@dataclass
class QuerySpan:
    """A run of queries a training-time plug-in adds to the decoder's query axis (denoising groups, H-DETR's
    one-to-many branch) and how each layer's predictions of it are supervised: ``size`` queries, the sets
    named ``suffix`` (final layer) and ``_aux<i>`` + ``suffix`` (earlier layers), with the :class:`Supervised`
    options ``assignment``, ``target_repeat``, ``weight`` and ``num_boxes_factor``."""

    suffix: str
    size: int
    assignment: Assignment | None = None
    target_repeat: int = 1
    weight: float = 1.0
    num_boxes_factor: float = 1.0


@dataclass
class DetectorOutput:
    """What a :class:`~matchdetr.models.detector.Detector` returns.

    logits: ``[B, Q, C]`` the last decoder layer's class logits.
    boxes: ``[B, Q, 4]`` the last decoder layer's boxes, normalised cxcywh.
    aux: the earlier decoder layers' predictions, first layer first.
    extra: further prediction sets plug-ins add (denoising, one-to-many, encoder proposals), each a
        :class:`Supervised` with its targets' rule, so the criterion needs no knowledge of where they came from.
    masks: ``[B, Q, H/4, W/4]`` the last layer's mask logits (instance segmentation), or None.
    """

    logits: Tensor
    boxes: Tensor
    aux: list[Prediction] = field(default_factory=list)
    extra: list[Supervised] = field(default_factory=list)
    masks: Tensor | None = None

    @property
    def final(self) -> Prediction:
        return Prediction(self.logits, self.boxes, self.masks)

    @classmethod
    def from_layers(cls, layers: list[Prediction], before: list[QuerySpan], after: list[QuerySpan],
                    proposals: list[Supervised]) -> "DetectorOutput":
        """The output of a decoder whose query axis is ``[before spans | matching queries | after spans]``:
        the matching queries' last layer and earlier layers, then one :class:`Supervised` set per span and layer
        (spans in axis order, final layer first), then the sets made before the decoder (``proposals``)."""
        total = layers[-1].logits.shape[1]
        start = sum(s.size for s in before)
        keep = slice(start, total - sum(s.size for s in after))
        extra: list[Supervised] = []
        for span, lo in zip(before + after, _offsets(before, 0) + _offsets(after, keep.stop)):
            part = slice(lo, lo + span.size)
            names = [span.suffix] + [f"_aux{i}{span.suffix}" for i in range(len(layers) - 1)]
            extra += [Supervised(n, p.select(part), span.assignment, span.target_repeat, span.weight,
                                 span.num_boxes_factor) for n, p in zip(names, [layers[-1]] + layers[:-1])]
        final = layers[-1].select(keep)
        return cls(logits=final.logits, boxes=final.boxes, aux=[p.select(keep) for p in layers[:-1]],
                   extra=extra + list(proposals), masks=final.masks)

    def supervision(self) -> list[Supervised]:
        """Every prediction set that carries a loss: final, each auxiliary layer, then the plug-ins'."""
        sets = [Supervised("", self.final)]
        sets += [Supervised(f"_aux{i}", p) for i, p in enumerate(self.aux)]
        return sets + list(self.extra)


def _offsets(spans: list[QuerySpan], start: int) -> list[int]:
    out = []
    for s in spans:
        out.append(start)
        start += s.size
    return out


@dataclass
class Detections:
    """Post-processed detections of one image.

    boxes: ``[K, 4]`` absolute xyxy pixels of the original image.
    scores: ``[K]`` sigmoid scores (times the mask score for instance segmentation).
    labels: ``[K]`` contiguous model labels.
    masks: ``[K, H, W]`` bool instance masks of the original image, or None.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    masks: Tensor | None = None

    def select(self, keep: Tensor) -> "Detections":
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep],
                          None if self.masks is None else self.masks[keep])
