"""Mask-DINO's unified query selection and mask-enhanced anchor boxes (Li et al. CVPR 2023, sec 3.3).

As DINO, every encoder token proposes a box and the top-k by best class score are kept. Unlike DINO's mixed
selection, the selected token FEATURES (detached) are the content queries, and they are predicted from
directly: the selected tokens give class logits, boxes and masks supervised as the ``_enc`` set, and
(``box_init="bitmask"``) the initial anchor of each query is the bounding box of its predicted mask (``mask
logit > 0``) rather than the proposal box: masks are learnt faster than boxes, so they give better anchors.
``initial_pred``: the content queries are also scored before the first decoder layer (``_init`` set; boxes =
the initial anchors), as the release's ``initial_pred``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...boxes import inverse_sigmoid, mask_extents, xyxy_to_cxcywh
from ...structures import Prediction, Supervised, Target
from ..memory import Memory
from ..queries import Queries
from .mask_head import MaskHead
from .query_selection import _encode_proposals, _gather

BOX_INIT = ("bitmask", "no")


def mask_boxes(masks: Tensor, valid_wh: Tensor) -> Tensor:
    """Bounding boxes of boolean masks ``[B, K, h, w]`` (``boxes.mask_extents``) as normalised cxcywh ``[B, K, 4]``
    of the valid extent ``valid_wh [B, 2]`` (in mask pixels); an empty mask gives the zero box, as the release."""
    xyxy = mask_extents(masks).to(valid_wh.dtype) / torch.cat((valid_wh, valid_wh), -1)[:, None]
    return xyxy_to_cxcywh(xyxy).clamp(0.0, 1.0)


class MaskQuerySelection(nn.Module):
    """Query initialiser of Mask-DINO (module docstring); the detector's :class:`MaskHead`, given at the call,
    scores the proposals (its class and box branches, proposal entry) and predicts their masks."""

    def __init__(self, dim: int, num_queries: int, box_init: str = "bitmask", initial_pred: bool = True) -> None:
        super().__init__()
        if box_init not in BOX_INIT:
            raise ValueError(f"box_init must be one of {BOX_INIT}, got {box_init!r}")
        self.num_queries, self.box_init, self.initial_pred = num_queries, box_init, initial_pred
        self.enc_output = nn.Linear(dim, dim)
        self.enc_output_norm = nn.LayerNorm(dim)

    def forward(self, memory: Memory, targets: list[Target] | None = None, head: MaskHead | None = None) -> Queries:
        if head is None:
            raise ValueError("Mask-DINO's query selection needs the detector's MaskHead: call it with head=")
        # ranking reads the class branch on the tokens themselves (the release's enc_outputs_class_unselected)
        tokens, enc_logits, enc_coords = _encode_proposals(memory, self.enc_output, self.enc_output_norm,
                                                           head.detection)
        k = min(self.num_queries, enc_logits.shape[1])
        top = torch.topk(enc_logits.max(-1).values, k, dim=1).indices
        selected, coords = _gather(tokens, top), _gather(enc_coords, top)
        enc = Prediction(logits=head.classify(head.proposal_entry, selected), boxes=coords.sigmoid(),
                         masks=head.masks(selected, memory))
        if self.box_init == "bitmask":
            assert enc.masks is not None
            # the map's (w, h) as a tensor op, so an exported graph follows the input size
            wh = torch._shape_as_tensor(enc.masks)[-2:].flip(0).to(memory.valid_ratios)
            valid = memory.valid_ratios[:, 0] * wh
            # through logit space and back, as the release hands them to its decoder (maskdino_decoder.py:438
            # inverse_sigmoid, dino_decoder.py:119 sigmoid): an edge at 0 or 1 becomes 1e-5 from it
            reference = inverse_sigmoid(mask_boxes(enc.masks.detach() > 0, valid)).sigmoid()
        else:
            reference = coords.detach().sigmoid()
        content = selected.detach()
        sets = [Supervised("_enc", enc)]
        if self.initial_pred:
            sets.append(Supervised("_init", Prediction(logits=head.classify(0, content), boxes=reference,
                                                       masks=head.masks(content, memory))))
        return Queries(content=content, pos=None, reference=reference, proposals=sets)
