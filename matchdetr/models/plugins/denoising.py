"""Denoising training (DN-DETR, Li et al. 2022; contrastive denoising of DINO, Zhang et al. 2023, sec 3.3).

Training-only queries made from the ground truth: noised GT boxes become extra reference boxes and noised GT
labels (through a label embedding) their content queries. They are decoded together with the matching
queries but supervised with a fixed assignment to the GT they came from, never matched. An attention mask
keeps matching queries from seeing any denoising query and keeps denoising groups apart.

Layout of the decoder's queries: ``[group 0 | group 1 | ... | group G-1 | matching queries]``; each group
holds ``pad`` slots. DN-DETR: ``pad = max_gt`` positives. DINO: ``pad = 2 * max_gt``, positives first, then
negatives (noised further, in ``[lambda, 2 lambda)``) that are supervised as background.

Options (:class:`DenoisingSpec`, filled from ``model.denoising``): style ``dn_detr`` (positives only, ``groups`` fixed, labels flipped with
probability ``label_noise``), ``dino`` (contrastive, ``max(dn_number // max_gt, 1)`` groups, labels flipped
with probability ``label_noise / 2`` as released) or ``mask_dino`` (the Mask-DINO release's "seg" denoising:
DN-DETR's positives and box noise, ``dn_number // max_gt`` groups, none when that is 0, labels flipped with
probability ``label_noise / 2``); ``box_noise`` is lambda.
"""

from __future__ import annotations

from dataclasses import dataclass
import torch
from torch import Tensor, nn

from ...boxes import cxcywh_to_xyxy, xyxy_to_cxcywh
from ...fields import Component, knob
from ...structures import Assignment, QuerySpan, Target
from ..memory import Memory
from ..queries import Queries


STYLES = ("dn_detr", "dino", "mask_dino")


@dataclass(frozen=True)
class DenoisingSpec:
    """How the denoising groups are made: ``style`` ``dn_detr`` | ``dino``; ``dn_number`` (DINO: groups =
    ``max(dn_number // max GT, 1)``); ``groups`` (DN-DETR, fixed); ``label_noise``; ``box_noise`` (lambda)."""

    style: str
    dn_number: int = 100
    groups: int = 5
    label_noise: float = 0.5
    box_noise: float = 1.0


@dataclass
class DenoisingGroups:
    """content ``[B, G*pad, d]``, reference ``[B, G*pad, 4]`` (normalised cxcywh), attn_mask
    ``[G*pad + Q, G*pad + Q]`` bool (True = may not attend), the fixed assignment of positives per image."""

    content: Tensor
    reference: Tensor
    attn_mask: Tensor
    assignment: Assignment
    groups: int
    pad: int

    @property
    def num_dn(self) -> int:
        return self.groups * self.pad


def denoising_mask(groups: int, pad: int, num_queries: int, device: torch.device) -> Tensor:
    """``[G*pad + Q, G*pad + Q]`` bool: matching queries cannot see denoising queries, and each group sees
    only itself (and the matching queries, which carry no GT information)."""
    n_dn = groups * pad
    mask = torch.zeros(n_dn + num_queries, n_dn + num_queries, dtype=torch.bool, device=device)
    mask[n_dn:, :n_dn] = True
    group_of = torch.arange(n_dn, device=device) // pad
    mask[:n_dn, :n_dn] = group_of[:, None] != group_of[None, :]
    return mask


def _noise_labels(labels: Tensor, p: float, num_classes: int, gen: torch.Generator | None) -> Tensor:
    flip = torch.rand(labels.shape, generator=gen, device=labels.device) < p
    random = torch.randint(0, num_classes, labels.shape, generator=gen, device=labels.device)
    return torch.where(flip, random, labels)


def _noise_boxes_dn_detr(boxes: Tensor, scale: float, gen: torch.Generator | None) -> Tensor:
    """DN-DETR: centre moved by up to ``scale * wh / 2``, width and height scaled by up to ``+-scale``."""
    diff = torch.cat((boxes[:, 2:] / 2, boxes[:, 2:]), -1)
    noise = torch.rand(boxes.shape, generator=gen, device=boxes.device) * 2 - 1
    return (boxes + noise * diff * scale).clamp(0.0, 1.0)


def _noise_boxes_dino(boxes: Tensor, scale: float, negative: Tensor, gen: torch.Generator | None) -> Tensor:
    """DINO: every corner moves by ``u * lambda * wh / 2`` with ``|u| < 1`` for positives and
    ``1 <= |u| < 2`` for negatives (the corners of xyxy, as the release does)."""
    xyxy = cxcywh_to_xyxy(boxes)
    half = torch.cat((boxes[:, 2:] / 2, boxes[:, 2:] / 2), -1)
    sign = torch.randint(0, 2, boxes.shape, generator=gen, device=boxes.device) * 2.0 - 1.0
    mag = torch.rand(boxes.shape, generator=gen, device=boxes.device) + negative[:, None].float()
    return xyxy_to_cxcywh((xyxy + sign * mag * half * scale).clamp(0.0, 1.0))


def build_denoising(targets: list[Target], num_queries: int, label_embed: nn.Embedding, num_classes: int,
                    spec: DenoisingSpec, gen: torch.Generator | None = None) -> DenoisingGroups | None:
    """Denoising queries for a batch, or None when the batch has no ground truth."""
    counts = [len(t) for t in targets]
    max_gt = max(counts, default=0)
    if max_gt == 0:
        return None
    if spec.style not in STYLES:
        raise ValueError(f"denoising style must be one of {STYLES}, got {spec.style!r}")
    contrastive, per_batch = spec.style == "dino", spec.style in ("dino", "mask_dino")
    groups = spec.groups if not per_batch else max(spec.dn_number // max_gt, int(contrastive))
    if groups == 0:  # Mask-DINO: more GT in one image than dn_number queries -> no denoising for the batch
        return None
    copies = 2 if contrastive else 1  # positive (+ negative) per GT and group
    pad = copies * max_gt
    device = targets[0].boxes.device
    d = label_embed.embedding_dim
    content = label_embed.weight.new_zeros(len(targets), groups * pad, d)
    # unused slots (images with fewer GT than max_gt) start as the whole-image box, as DINO's zero logits do
    reference = torch.full((len(targets), groups * pad, 4), 0.5, device=device)
    indices = []
    p_flip = spec.label_noise * 0.5 if per_batch else spec.label_noise
    for b, t in enumerate(targets):
        n = counts[b]
        if n == 0:
            indices.append((torch.zeros(0, dtype=torch.long, device=device),) * 2)
            continue
        # slot of copy c of GT j in group g: g * pad + c * max_gt + j
        g = torch.arange(groups, device=device)[:, None, None]
        c = torch.arange(copies, device=device)[None, :, None]
        j = torch.arange(n, device=device)[None, None, :]
        slots = (g * pad + c * max_gt + j).reshape(-1)
        gt_idx = j.expand(groups, copies, n).reshape(-1)
        negative = (c.expand(groups, copies, n) == 1).reshape(-1)
        labels = _noise_labels(t.labels[gt_idx], p_flip, num_classes, gen)
        boxes = t.boxes[gt_idx].float()
        if contrastive:
            # Negatives may flip a corner past the other (w or h < 0); the release's logit round trip turns
            # that into a tiny positive size, and so does this clamp.
            boxes = _noise_boxes_dino(boxes, spec.box_noise, negative, gen)
            boxes = torch.cat((boxes[:, :2], boxes[:, 2:].clamp(min=1e-5)), -1)
        else:
            boxes = _noise_boxes_dn_detr(boxes, spec.box_noise, gen)
        content[b, slots] = label_embed(labels).to(content.dtype)
        reference[b, slots] = boxes
        # the positives are copy 0 of every group: a view, not a boolean mask, whose data-dependent size
        # would break a torch.compile graph (same order: group, then GT)
        indices.append((slots.view(groups, copies, n)[:, 0].reshape(-1), gt_idx.view(groups, copies, n)[:, 0].reshape(-1)))
    mask = denoising_mask(groups, pad, num_queries, device)
    return DenoisingGroups(content, reference, mask, Assignment(indices), groups, pad)


def denoising_span(dn: DenoisingGroups) -> QuerySpan:
    """The denoising slots as a span of the query axis: ``_dn`` sets with their fixed assignment; the normaliser
    counts every group (num_boxes * groups)."""
    return QuerySpan("_dn", dn.num_dn, assignment=dn.assignment, num_boxes_factor=dn.groups)


class DenoisingQueries(nn.Module):
    """Wraps a query initialiser: in training (with targets) prepends the denoising groups to its queries.

    The wrapped initialiser must give reference boxes and derive positions from them (anchor decoders:
    DAB-Deformable, DINO), since denoising queries have no learned positional embedding.
    """

    def __init__(self, base: nn.Module, num_classes: int, dim: int, spec: DenoisingSpec) -> None:
        super().__init__()
        self.base, self.spec, self.num_classes = base, spec, num_classes
        self.label_enc = nn.Embedding(num_classes + 1, dim)

    def forward(self, memory: Memory, targets: list[Target] | None = None, head: nn.Module | None = None) -> Queries:
        q = self.base(memory, targets, head)
        if not self.training or targets is None:
            return q
        if q.reference is None or q.pos is not None:
            raise ValueError("denoising needs anchor queries (reference boxes, positions derived per layer)")
        dn = build_denoising(targets, q.content.shape[1], self.label_enc, self.num_classes, self.spec)
        if dn is None:
            # No GT anywhere in the batch: nothing to denoise, but the label embedding must still be in the
            # graph (with zero gradient), or DDP waits forever for its gradient on this process.
            q.content = q.content + 0.0 * self.label_enc.weight.sum()
            return q
        mask = dn.attn_mask
        if q.self_attn_mask is not None:  # e.g. the one-to-many branch's own mask, kept for the matching part
            mask[dn.num_dn:, dn.num_dn:] |= q.self_attn_mask
        reference = torch.cat((dn.reference.to(q.reference.dtype), q.reference), 1)
        return Queries(content=torch.cat((dn.content.to(q.content.dtype), q.content), 1), pos=None,
                       reference=reference, self_attn_mask=mask, before=[denoising_span(dn)] + q.before,
                       after=q.after, proposals=q.proposals)


class _DenoisingConfig(Component):
    def build(self, base: nn.Module, num_classes: int, dim: int) -> DenoisingQueries:
        """``base`` (a query initialiser with anchor boxes) wrapped with this denoising."""
        values = {k: getattr(self, k) for k in ("dn_number", "groups", "label_noise", "box_noise") if hasattr(self, k)}
        return DenoisingQueries(base, num_classes, dim, DenoisingSpec(self.kind, **values))


@dataclass
class DnDetrDenoisingConfig(_DenoisingConfig):
    """DN-DETR's denoising: a fixed number of groups of positives (DN-DETR sec 3.3 defaults)."""

    kind = "dn_detr"
    groups: int = knob(5, ge=1)  # denoising groups per batch
    label_noise: float = knob(0.2, ge=0, le=1)  # probability that a GT label is flipped to a random class
    box_noise: float = knob(0.4, ge=0)  # lambda: the centre moves by up to lambda * wh / 2, the size by +-lambda


@dataclass
class DinoDenoisingConfig(_DenoisingConfig):
    """DINO's contrastive denoising (sec 3.3): positives and negatives, groups = max(dn_number // max GT, 1)."""

    kind = "dino"
    dn_number: int = knob(100, ge=1)  # denoising queries per batch (positives + negatives: 2 per GT and group)
    label_noise: float = knob(0.5, ge=0, le=1)  # labels are flipped with half this probability, as released
    box_noise: float = knob(1.0, ge=0)  # lambda: positives' corners move < lambda * wh / 2, negatives' [1, 2) times that


@dataclass
class MaskDinoDenoisingConfig(_DenoisingConfig):
    """The Mask-DINO release's "seg" denoising: DN-DETR's positives and box noise, dn_number // max GT groups
    (none when that is 0), labels flipped with half of label_noise."""

    kind = "mask_dino"
    dn_number: int = knob(100, ge=1)  # denoising queries per batch
    label_noise: float = knob(0.4, ge=0, le=1)  # labels are flipped with half this probability, as released
    box_noise: float = knob(0.4, ge=0)  # lambda, as DN-DETR's
