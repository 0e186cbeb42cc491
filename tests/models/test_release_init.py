"""Fidelity to the releases where they differ from a plain reading of the papers (spec sam-detr.md sec 7,
stable-matching.md sec 3): SAM-DETR's positional embedding of the feature grid, and the initialisation rules
of SAM-DETR's transformer and of Stable-DINO's memory fusion."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from matchdetr import api, presets
from matchdetr.models.attention import MultiheadAttention
from matchdetr.models.deformable_attention import MSDeformAttn
from matchdetr.models.sam_attention import ConditionalSelfAttention, PerHeadQueryCrossAttention

SAM_PRESETS = [n for n in presets.names() if n.startswith(("sam-detr", "stable-sam-detr")) and n.endswith("-tiny")]


def release_grid_embedding(mask: torch.Tensor, num_feats: int) -> torch.Tensor:
    """SAM-DETR's released ``PositionEmbeddingSine`` (models/position_encoding.py), transcribed statement by
    statement in float64: ``y = cumsum(not_mask) - 0.5``, ``y / (y[last] + eps + 0.5) * 2 pi``, temperature 10000,
    sin/cos interleaved, (y, x) blocks."""
    not_mask = (~mask).to(torch.float64)
    y_embed = not_mask.cumsum(1) - 0.5
    x_embed = not_mask.cumsum(2) - 0.5
    eps, scale = 1e-6, 2 * math.pi
    y_embed = y_embed / (y_embed[:, -1:, :] + eps + 0.5) * scale
    x_embed = x_embed / (x_embed[:, :, -1:] + eps + 0.5) * scale
    dim_t = torch.arange(num_feats, dtype=torch.float64)
    dim_t = 10000 ** (2 * (dim_t // 2) / num_feats)
    pos_x = x_embed[:, :, :, None] / dim_t
    pos_y = y_embed[:, :, :, None] / dim_t
    pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


@pytest.mark.parametrize("name", SAM_PRESETS)
def test_sam_detr_grid_embedding_is_the_releases(name: str) -> None:
    model = api.build(name, num_classes=3, **{"backbone.weights": ""})
    mask = torch.zeros(2, 6, 7, dtype=torch.bool)
    mask[1, 4:, :] = True  # a padded image in the batch: 4 valid rows, 5 valid columns
    mask[1, :, 5:] = True
    ours = model.neck.position(mask, dtype=torch.float64)
    ref = release_grid_embedding(mask, model.config.model.transformer.hidden_dim // 2)
    valid = ~mask[:, None].expand_as(ref)
    # padded tokens: the release divides by ~1e-6 there (spec sec 7: not copied); they are masked everywhere
    torch.testing.assert_close(ours[valid], ref[valid], rtol=0, atol=1e-9)


def _xavier_bound(w: torch.Tensor, fan: int | None = None) -> float:
    fan_in, fan_out = w.shape[1] * w[0, 0].numel(), w.shape[0] * w[0, 0].numel()
    return math.sqrt(6.0 / (fan if fan is not None else fan_in + fan_out))


def _is_xavier(w: torch.Tensor, fan: int | None = None) -> bool:
    """Inside the Xavier-uniform bound and spread over it (std of U(-a, a) is a / sqrt 3)."""
    a = _xavier_bound(w, fan)
    return bool(w.abs().max() <= a + 1e-7) and abs(float(w.std()) - a / math.sqrt(3)) < 0.15 * a / math.sqrt(3)


@pytest.mark.parametrize("name", ["sam-detr-tiny", "sam-detr-smca-tiny", "sam-detr-plus-plus-tiny"])
def test_sam_detr_transformer_initialisation(name: str) -> None:
    torch.manual_seed(0)
    model = api.build(name, num_classes=3, **{"backbone.weights": ""})
    d = model.config.model.transformer.hidden_dim
    for part in (model.encoder, model.decoder.layers):
        deform = {id(p) for m in part.modules() if isinstance(m, MSDeformAttn) for p in m.parameters()}
        mha = {id(p) for m in part.modules() if isinstance(m, MultiheadAttention)
               for p in (m.q_proj.weight, m.k_proj.weight, m.v_proj.weight)}
        for pname, p in part.named_parameters():
            if p.dim() > 1 and id(p) not in deform:
                # q/k/v of nn.MultiheadAttention are one stacked [3d, d] matrix in the release: fan d + 3d
                assert _is_xavier(p.detach(), 4 * d if id(p) in mha else None), pname
        for m in part.modules():
            if isinstance(m, (MultiheadAttention, ConditionalSelfAttention, PerHeadQueryCrossAttention)):
                assert torch.count_nonzero(m.out_proj.bias) == 0
            if isinstance(m, MSDeformAttn):  # its own rule survives the pass: uniform attention at start
                assert torch.count_nonzero(m.attention_weights.weight) == 0
                assert torch.count_nonzero(m.sampling_offsets.weight) == 0
    for layer in model.decoder.layers:
        assert torch.count_nonzero(layer.aligner.point_mlp[-1].bias) == 0
    # input projection: Conv2d's default (kaiming-uniform a=sqrt 5: bound 1/sqrt(fan_in)), bias not zero
    for seq in model.neck.proj:
        conv = seq[0]
        assert conv.weight.abs().max() <= 1 / math.sqrt(conv.in_channels) + 1e-7
        assert torch.count_nonzero(conv.bias) == conv.bias.numel()
    # the heads are not the transformer's: box deltas still start at zero
    assert all(torch.count_nonzero(mlp.layers[-1].weight) == 0 for mlp in model.head.bbox_embed)


@pytest.mark.parametrize("name", ["stable-dino-tiny", "stable-deformable-detr-tiny"])
def test_stable_fusion_initialisation(name: str) -> None:
    torch.manual_seed(0)
    model = api.build(name, num_classes=3, **{"backbone.weights": ""})
    proj: nn.Linear = model.fusion.fuse.proj
    assert _is_xavier(proj.weight.detach())
    assert torch.count_nonzero(proj.bias) == 0
