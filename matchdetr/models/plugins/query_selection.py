"""Two-stage query selection: encoder tokens propose boxes, the best proposals initialise the decoder.

Deformable-DETR (sec 4.1, appendix A.4): every encoder token is a proposal centred on its pixel with
``wh = 0.05 * 2^level``; a class head and a box head (the detection head's extra, encoder entry) score and
refine them; the top-k refined boxes, detached, become the decoder's reference boxes, and their sine embedding
gives the positional and content queries. The proposals are supervised as a prediction set of their own
(``_enc`` losses).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ...structures import Prediction, Supervised, Target
from ..heads import DetectionHead
from ..memory import Memory
from ..queries import Queries


def encoder_proposals(memory: Memory, base_wh: float = 0.05) -> tuple[Tensor, Tensor]:
    """Per-token proposals in logit space ``[B, S, 4]`` (inf where invalid) and the validity mask ``[B, S]``.

    A proposal is valid when every coordinate lies inside (0.01, 0.99) and its token is not padding; the
    centres are normalised by each image's valid size on that level.
    """
    b = memory.tokens.shape[0]
    dtype = torch.promote_types(memory.tokens.dtype, torch.float32)  # float32 at least; float64 stays float64
    props = []
    start = 0
    for lvl, (h, w) in enumerate(memory.shapes):
        mask = memory.mask[:, start : start + h * w].view(b, h, w)
        valid_h, valid_w = (~mask[:, :, 0]).sum(1), (~mask[:, 0, :]).sum(1)
        ys, xs = torch.meshgrid(  # arange == linspace(0, h - 1, h) exactly, and traces with a tensor h (export)
            torch.arange(h, dtype=dtype, device=mask.device),
            torch.arange(w, dtype=dtype, device=mask.device),
            indexing="ij",
        )
        grid = torch.stack((xs, ys), -1)[None].expand(b, -1, -1, -1)
        scale = torch.stack((valid_w, valid_h), -1).view(b, 1, 1, 2).to(grid.dtype)
        centre = (grid + 0.5) / scale
        wh = torch.full_like(centre, base_wh * 2.0**lvl)
        props.append(torch.cat((centre, wh), -1).view(b, -1, 4))
        start += h * w
    proposals = torch.cat(props, 1)
    valid = ((proposals > 0.01) & (proposals < 0.99)).all(-1) & ~memory.mask
    logits = torch.log(proposals / (1 - proposals)).masked_fill(~valid[..., None], float("inf"))
    return logits, valid


def proposal_sine_embed(coord_logits: Tensor, num_feats: int, temperature: float = 10000.0) -> Tensor:
    """``[B, K, 4]`` box logits -> ``[B, K, 4 * num_feats]``: sine embedding of the sigmoid box in the
    (cx, cy, w, h) order, each coordinate's features interleaved sin/cos (Deformable-DETR's two-stage)."""
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=coord_logits.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    pos = coord_logits.sigmoid().float()[..., None] * (2 * math.pi) / dim_t
    pos = torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), -1).flatten(2)
    return pos.to(coord_logits.dtype)


def _encode_proposals(memory: Memory, enc_output: nn.Module, enc_norm: nn.Module,
                      head: DetectionHead) -> tuple[Tensor, Tensor, Tensor]:
    """Score and refine every token's proposal: (token features, class logits ``[B, S, C]``, box logits
    ``[B, S, 4]``; invalid tokens zeroed / inf), by the head's proposal entry."""
    proposals, valid = encoder_proposals(memory)
    tokens = enc_norm(enc_output(memory.tokens.masked_fill(~valid[..., None], 0.0)))
    entry = head.proposal_entry
    return tokens, head.classify(entry, tokens), head.box_delta(entry, tokens) + proposals


def _need(head: DetectionHead | None) -> DetectionHead:
    if head is None:
        raise ValueError("query selection scores the encoder's proposals with the detector's head: call it with head=")
    return head


def _gather(x: Tensor, index: Tensor) -> Tensor:
    """``x [B, S, C]`` rows ``index [B, K]`` -> ``[B, K, C]``."""
    return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))


class TwoStageQueries(nn.Module):
    """Deformable-DETR's two-stage query initialiser.

    The detector's head, given at the call, scores the proposals with its proposal entry (its last one).
    Ranking uses the first class's logit, as the release and HF transformers do: the encoder head is trained
    class-agnostically (every GT is class 0), so that logit is the foreground score.
    """

    def __init__(self, dim: int, num_queries: int) -> None:
        super().__init__()
        self.num_queries = num_queries
        self.enc_output = nn.Linear(dim, dim)
        self.enc_output_norm = nn.LayerNorm(dim)
        self.pos_trans = nn.Linear(2 * dim, 2 * dim)
        self.pos_trans_norm = nn.LayerNorm(2 * dim)

    def forward(self, memory: Memory, targets: list[Target] | None = None, head: DetectionHead | None = None,
                num_queries: int | None = None) -> Queries:
        """num_queries: select this many proposals instead (H-DETR's one-to-many branch adds its own)."""
        d = memory.tokens.shape[-1]
        _, enc_logits, enc_coords = _encode_proposals(memory, self.enc_output, self.enc_output_norm, _need(head))
        k = min(num_queries or self.num_queries, enc_logits.shape[1])
        top = torch.topk(enc_logits[..., 0], k, dim=1).indices
        top_coords = _gather(enc_coords, top).detach()
        pos, content = self.pos_trans_norm(self.pos_trans(proposal_sine_embed(top_coords, d // 2))).split(d, -1)
        enc = Prediction(logits=enc_logits, boxes=enc_coords.sigmoid())
        return Queries(content=content, pos=pos, reference=top_coords.sigmoid(),
                       proposals=[Supervised("_enc", enc, class_agnostic=True)])


class MixedQuerySelection(nn.Module):
    """DINO's mixed query selection (Zhang et al. 2023, sec 3.4): the top-k proposals by their best class
    score give the initial anchors (detached), while the content queries stay learned embeddings. Only the
    selected proposals are supervised (``_enc``, class-specific), as the release does."""

    def __init__(self, dim: int, num_queries: int) -> None:
        super().__init__()
        self.num_queries = num_queries
        self.enc_output = nn.Linear(dim, dim)
        self.enc_output_norm = nn.LayerNorm(dim)
        self.tgt_embed = nn.Embedding(num_queries, dim)

    def forward(self, memory: Memory, targets: list[Target] | None = None, head: DetectionHead | None = None) -> Queries:
        head = _need(head)
        tokens, enc_logits, enc_coords = _encode_proposals(memory, self.enc_output, self.enc_output_norm, head)
        k = min(self.num_queries, enc_logits.shape[1])
        top = torch.topk(enc_logits.max(-1).values, k, dim=1).indices
        top_coords = _gather(enc_coords, top)
        # the selected tokens are re-scored for the loss, as the release supervises hs_enc
        enc = Prediction(logits=head.classify(head.proposal_entry, _gather(tokens, top)), boxes=top_coords.sigmoid())
        content = self.tgt_embed.weight[:k][None].expand(memory.tokens.shape[0], -1, -1)
        return Queries(content=content, pos=None, reference=top_coords.detach().sigmoid(),
                       proposals=[Supervised("_enc", enc)])
