"""The Semantics Aligner of SAM-DETR (Zhang et al. CVPR 2022; SAM-DETR++ sec 4.2, fig. 2b).

Before cross-attention, every query's content is re-sampled from the encoder memory inside its reference box,
so query and keys live in the same embedding space and their dot product measures similarity from the start:

1. ``F_R = RoIAlign(F, box)``: 7x7 region features of the (un-positioned) memory map (eq. 2);
2. keypoint search: ``Conv1x1(d -> d/4) + ReLU``, flatten, ``MLP(d/4*49 -> 256 -> 512 -> 512 -> 2M)``,
   ``tanh`` -> M offsets in ``(-1, 1)^2`` of the box, so keypoints stay strictly inside it (eq. 4);
3. keypoint ``h``'s feature is bilinearly sampled from ``F_R`` and becomes head ``h``'s query content (eq. 5);
   its position ``centre + 0.5 * wh * delta`` gets a sine embedding, head ``h``'s positional query (eq. 6);
4. reweighting by the previous query: ``Q_h *= sigmoid(W1 tgt)_h``, ``P_h *= sigmoid(W2 tgt)_h`` (eq. 7-8).

Ablations (table 3/4): ``resample`` avg_pool | max_pool | keypoint_1 | keypoints_M, ``reweight`` on/off,
``search_range`` box | image (keypoints anywhere in the image, read from the whole map). ``extra_outputs``
adds that many more outputs per head to the keypoint MLP for a plug-in that reads the region too (SMCA's
Gaussian scales, sec 4.5.1); they are returned as ``AlignedQueries.extra``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...boxes import cxcywh_to_xyxy
from ...ops.roi_align import roi_align
from ..position import sine_embed

RESAMPLE = ("avg_pool", "max_pool", "keypoint_1", "keypoints_M")
SEARCH_RANGE = ("box", "image")


@dataclass
class AlignedQueries:
    """content, pos: ``[B, N, M, d]`` per-head query content and positional embedding; points: ``[B, N, M, 2]``
    each head's keypoint (x, y) normalised to the valid image; extra: ``[B, N, M, k]`` or None."""

    content: Tensor
    pos: Tensor
    points: Tensor
    extra: Tensor | None = None


class SemanticAligner(nn.Module):
    """The aligner plug-in of a SAM decoder layer (module docstring); ``M = num_heads`` keypoints."""

    def __init__(self, dim: int, num_heads: int, resample: str = "keypoints_M", reweight: bool = True,
                 search_range: str = "box", extra_outputs: int = 0, roi_size: int = 7,
                 sampling_ratio: int | None = None) -> None:
        super().__init__()
        if resample not in RESAMPLE:
            raise ValueError(f"resample must be one of {RESAMPLE}, got {resample!r}")
        if search_range not in SEARCH_RANGE:
            raise ValueError(f"search_range must be one of {SEARCH_RANGE}, got {search_range!r}")
        self.dim, self.num_heads, self.resample, self.search_range = dim, num_heads, resample, search_range
        self.roi_size, self.sampling_ratio, self.extra_outputs = roi_size, sampling_ratio, extra_outputs
        self.num_points = {"keypoints_M": num_heads, "keypoint_1": 1}.get(resample, 0)
        out = 2 * self.num_points + extra_outputs * num_heads
        self.point_conv: nn.Sequential | None = None
        self.point_mlp: nn.Sequential | None = None
        if out > 0:  # the pooling strategies need no search network (unless a plug-in reads its outputs)
            self.point_conv = nn.Sequential(nn.Conv2d(dim, dim // 4, 1), nn.ReLU())  # the release's point1
            self.point_mlp = nn.Sequential(nn.Linear(dim // 4 * roi_size * roi_size, 256), nn.ReLU(),
                                           nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                                           nn.Linear(512, out))
            nn.init.zeros_(self.point_mlp[-1].bias)  # first keypoints scattered by the weights only
        self.reweight_content = nn.Linear(dim, dim * num_heads) if reweight else None
        self.reweight_pos = nn.Linear(dim, dim * num_heads) if reweight else None

    def forward(self, tgt: Tensor, reference: Tensor, feature_map: Tensor, valid_ratio: Tensor) -> AlignedQueries:
        """tgt: ``[B, N, d]`` the self-attention output; reference: ``[B, N, 4]`` normalised cxcywh of the valid
        image; feature_map: ``[B, d, H, W]`` memory without positions; valid_ratio: ``[B, 2]`` unpadded (w, h)."""
        b, n, d = tgt.shape
        m, (h, w) = self.num_heads, feature_map.shape[-2:]
        # boxes in feature pixels of the padded map (sec 4.2); RoIAlign gives boxes no gradient, as torchvision
        # the map size as a tensor op when exporting, so an ONNX graph follows the input size (eager: constants)
        size = (torch._shape_as_tensor(feature_map)[[3, 2, 3, 2]].to(reference) if torch.jit.is_tracing()
                else reference.new_tensor([w, h, w, h]))
        scale = torch.cat((valid_ratio, valid_ratio), -1)[:, None] * size
        boxes = cxcywh_to_xyxy(reference.detach()) * scale
        region = roi_align(feature_map, boxes, self.roi_size, 1.0, self.sampling_ratio, aligned=True)
        region = region.flatten(0, 1)  # [B*N, d, 7, 7]
        extra = None
        if self.point_conv is not None and self.point_mlp is not None:
            # the 1x1 conv (+ ReLU) as one matmul over channels: on CPU 3x faster than a conv backward
            conv = self.point_conv[0]
            hidden = F.relu(F.linear(region.permute(0, 2, 3, 1), conv.weight.flatten(1), conv.bias))
            raw = self.point_mlp(hidden.permute(0, 3, 1, 2).flatten(1))  # [B*N, 2P + kM], conv's flatten order
            delta = raw[:, : 2 * self.num_points].view(b * n, self.num_points, 2).tanh()
            if self.extra_outputs:
                extra = raw[:, 2 * self.num_points:].reshape(b, n, m, self.extra_outputs)
        if self.num_points == 0:  # pooling: one vector for every head, placed at the box centre
            feat = region.mean((2, 3)) if self.resample == "avg_pool" else region.amax((2, 3))
            content = feat.view(b, n, 1, d)
            points = reference[..., None, :2]
        elif self.search_range == "box":
            # bilinear read of F_R at the offsets; grid +-1 are the box edges (align_corners=False)
            content = F.grid_sample(region, delta[:, None], mode="bilinear", padding_mode="zeros", align_corners=False)
            content = content.view(b, n, d, self.num_points).transpose(2, 3)
            points = reference[..., None, :2] + 0.5 * reference[..., None, 2:] * delta.view(b, n, -1, 2)
        else:
            # "image": offsets span the whole valid image and the feature is read from the full map
            points = 0.5 + 0.5 * delta.view(b, n, -1, 2)
            grid = 2.0 * points * valid_ratio[:, None, None] - 1.0  # padded-map coordinates in [-1, 1]
            content = F.grid_sample(feature_map, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            content = content.permute(0, 2, 3, 1)  # [B, N, P, d]
        content, points = content.expand(b, n, m, d), points.expand(b, n, m, 2)
        pos = sine_embed(points, d // 2)  # [B, N, M, d], (y, x) halves as the memory's sine embedding
        if self.reweight_content is not None and self.reweight_pos is not None:
            content = content * self.reweight_content(tgt).view(b, n, m, d).sigmoid()
            pos = pos * self.reweight_pos(tgt).view(b, n, m, d).sigmoid()
        return AlignedQueries(content=content, pos=pos, points=points, extra=extra)
