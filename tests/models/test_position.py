"""Sine positional embeddings against a loop-by-loop transcription of DETR's / DAB-DETR's formulas."""

from __future__ import annotations

import math

import pytest
import torch

from matchdetr.models.position import PositionEmbeddingSine, sine_embed


def _freq(k: int, num_feats: int, temperature: float) -> float:
    return temperature ** (2 * (k // 2) / num_feats)


def _wave(value: float, k: int, num_feats: int, temperature: float) -> float:
    # feature k: sin for even k, cos for odd k, both at frequency 1 / T^(2 floor(k/2) / F)
    angle = value / _freq(k, num_feats, temperature)
    return math.sin(angle) if k % 2 == 0 else math.cos(angle)


def reference_grid(mask: torch.Tensor, num_feats: int, temperature: float, normalize: bool, scale: float,
                   offset: float, eps: float = 1e-6) -> torch.Tensor:
    """DETR's PositionEmbeddingSine, one output value at a time, in Python floats."""
    B, H, W = mask.shape
    valid = (~mask).tolist()
    out = torch.zeros(B, 2 * num_feats, H, W, dtype=torch.float64)
    for b in range(B):
        for i in range(H):
            for j in range(W):
                y = float(sum(valid[b][r][j] for r in range(i + 1)))  # 1-based row among valid pixels
                x = float(sum(valid[b][i][c] for c in range(j + 1)))
                if normalize:
                    y = (y + offset) / (sum(valid[b][r][j] for r in range(H)) + eps) * scale
                    x = (x + offset) / (sum(valid[b][i][c] for c in range(W)) + eps) * scale
                for k in range(num_feats):
                    out[b, k, i, j] = _wave(y, k, num_feats, temperature)  # y block first
                    out[b, num_feats + k, i, j] = _wave(x, k, num_feats, temperature)
    return out


def reference_points(coords: torch.Tensor, num_feats: int, temperature: float, scale: float) -> torch.Tensor:
    """DAB-DETR's gen_sineembed_for_position, generalised to K coords: blocks in order (y, x, w, h, ...)."""
    flat = coords.reshape(-1, coords.shape[-1]).tolist()
    K = coords.shape[-1]
    order = [1, 0, *range(2, K)] if K >= 2 else [0]
    rows = [[_wave(p[c] * scale, k, num_feats, temperature) for c in order for k in range(num_feats)] for p in flat]
    return torch.tensor(rows, dtype=torch.float64).reshape(*coords.shape[:-1], K * num_feats)


def _padded_masks() -> torch.Tensor:
    mask = torch.zeros(3, 4, 5, dtype=torch.bool)
    mask[1, :, 3:] = True  # 3 valid columns
    mask[2, 2:, :] = True  # 2 valid rows
    mask[2, :, 4:] = True
    return mask


@pytest.mark.parametrize(("normalize", "offset", "temperature"), [(True, 0.0, 10000.0), (True, -0.5, 10000.0),
                                                                  (False, 0.0, 20.0)])
def test_grid_matches_reference(normalize: bool, offset: float, temperature: float) -> None:
    mask, F = _padded_masks(), 6
    module = PositionEmbeddingSine(F, temperature, normalize=normalize, offset=offset)
    got = module(mask, dtype=torch.float64)
    expected = reference_grid(mask, F, temperature, normalize, 2 * math.pi, offset)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_grid_layout_detr_defaults() -> None:
    pos = PositionEmbeddingSine()(torch.zeros(2, 3, 4, dtype=torch.bool))
    assert pos.shape == (2, 256, 3, 4) and pos.dtype == torch.float32
    y, x = 2 / (3 + 1e-6) * 2 * math.pi, 4 / (4 + 1e-6) * 2 * math.pi  # pixel (row 1, col 3), 1-based counts
    assert pos[0, 0, 1, 3].item() == pytest.approx(math.sin(y), abs=1e-6)
    assert pos[0, 1, 1, 3].item() == pytest.approx(math.cos(y), abs=1e-6)
    assert pos[0, 128, 1, 3].item() == pytest.approx(math.sin(x), abs=1e-6)
    assert pos[0, 255, 1, 3].item() == pytest.approx(math.cos(x / 10000 ** (126 / 128)), abs=1e-6)


@pytest.mark.parametrize("offset", [0.0, -0.5])
def test_padding_does_not_change_valid_region(offset: float) -> None:
    module = PositionEmbeddingSine(16, offset=offset)
    alone = module(torch.zeros(1, 5, 7, dtype=torch.bool), dtype=torch.float64)
    # The same image in a batch padded to 8 x 11 (right and bottom), next to a full-size image.
    mask = torch.zeros(2, 8, 11, dtype=torch.bool)
    mask[0, 5:, :] = True
    mask[0, :, 7:] = True
    batched = module(mask, dtype=torch.float64)
    assert torch.equal(batched[0, :, :5, :7], alone[0])
    assert torch.equal(batched[1], module(torch.zeros(1, 8, 11, dtype=torch.bool), dtype=torch.float64)[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_grid_dtype(dtype: torch.dtype) -> None:
    mask = _padded_masks()
    pos = PositionEmbeddingSine(8)(mask, dtype=dtype)
    assert pos.dtype == dtype
    torch.testing.assert_close(pos.double(), reference_grid(mask, 8, 1e4, True, 2 * math.pi, 0.0),
                               rtol=0, atol=1e-2 if dtype == torch.bfloat16 else 1e-6)


@pytest.mark.parametrize("K", [1, 2, 4])
def test_sine_embed_matches_reference(K: int) -> None:
    coords = torch.rand(2, 3, K, dtype=torch.float64, generator=torch.Generator().manual_seed(K))
    got = sine_embed(coords, num_pos_feats=10, temperature=100.0)
    assert got.shape == (2, 3, K * 10) and got.dtype == torch.float64
    torch.testing.assert_close(got, reference_points(coords, 10, 100.0, 2 * math.pi), rtol=0, atol=1e-12)


def test_sine_embed_block_order() -> None:
    box = torch.tensor([[0.1, 0.2, 0.3, 0.4]], dtype=torch.float64)  # cx, cy, w, h
    out = sine_embed(box).view(4, 128)
    for block, coord in enumerate([0.2, 0.1, 0.3, 0.4]):  # y, x, w, h
        torch.testing.assert_close(out[block], sine_embed(torch.tensor([[coord]], dtype=torch.float64))[0])


def test_sine_embed_agrees_with_grid_embedding() -> None:
    # A point at a grid cell's normalised coordinates gets that cell's grid embedding: same (y, x) order.
    H, W, eps = 3, 5, 1e-6
    grid = PositionEmbeddingSine(64)(torch.zeros(1, H, W, dtype=torch.bool), dtype=torch.float64)
    i, j = 1, 3
    point = torch.tensor([(j + 1) / (W + eps), (i + 1) / (H + eps)], dtype=torch.float64)
    torch.testing.assert_close(sine_embed(point, num_pos_feats=64), grid[0, :, i, j], rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_sine_embed_dtype_follows_input(dtype: torch.dtype) -> None:
    coords = torch.rand(4, 2).to(dtype)
    out = sine_embed(coords, num_pos_feats=8)
    assert out.dtype == dtype and out.shape == (4, 16)


def test_odd_feature_count_rejected() -> None:
    with pytest.raises(ValueError, match="even"):
        sine_embed(torch.rand(2, 2), num_pos_feats=7)


def release_mask_dino_grid(x: torch.Tensor, num_pos_feats: int, temperature: float = 10000.0) -> torch.Tensor:
    """The Mask-DINO release's ``PositionEmbeddingSine.forward(x, mask=None)`` with ``normalize=True``
    (IDEA-Research/MaskDINO ``maskdino/modeling/pixel_decoder/position_encoding.py``), transcribed line by line in
    float64. Its pixel decoder calls it on each feature map without a mask (``maskdino_encoder.py``
    ``self.pe_layer(x)``): positions span the whole (padded) map, and there is no -0.5 offset."""
    mask = torch.zeros((x.size(0), x.size(2), x.size(3)), device=x.device, dtype=torch.bool)
    not_mask = ~mask
    y_embed = not_mask.cumsum(1, dtype=torch.float64)
    x_embed = not_mask.cumsum(2, dtype=torch.float64)
    eps, scale = 1e-6, 2 * math.pi
    y_embed = y_embed / (y_embed[:, -1:, :] + eps) * scale
    x_embed = x_embed / (x_embed[:, :, -1:] + eps) * scale
    dim_t = torch.arange(num_pos_feats, dtype=torch.float64, device=x.device)
    dim_t = temperature ** (2 * (dim_t // 2) / num_pos_feats)
    pos_x = x_embed[:, :, :, None] / dim_t
    pos_y = y_embed[:, :, :, None] / dim_t
    pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


def test_mask_dino_positions_equal_the_release() -> None:
    """Mask-DINO's setting (offset 0, the whole map: its Detector sees no padding mask) is the release's formula,
    in the input projection too (plus the level embedding); Deformable-DETR's -0.5 offset is not."""
    from matchdetr.models.neck import InputProjection

    maps = [torch.randn(2, c, h, w, dtype=torch.float64) for c, h, w in ((8, 12, 10), (16, 6, 5), (32, 3, 3))]
    no_padding = [torch.zeros(2, h, w, dtype=torch.bool) for _, _, h, w in (m.shape for m in maps)]
    for m, mask in zip(maps, no_padding):
        want = release_mask_dino_grid(m, 16)
        torch.testing.assert_close(PositionEmbeddingSine(16, offset=0.0)(mask, dtype=torch.float64), want, rtol=0, atol=1e-12)
        assert not torch.allclose(PositionEmbeddingSine(16, offset=-0.5)(mask, dtype=torch.float64), want, atol=1e-3)
    proj = InputProjection([8, 16, 32], 32, group_norm=True, level_embed=True, pos_offset=0.0).double()
    memory = proj(list(zip(maps, no_padding)), torch.zeros(2, 96, 80, dtype=torch.bool))
    for i, m in enumerate(maps):
        want = release_mask_dino_grid(m, 16) + proj.level_embed[i].view(1, -1, 1, 1)
        torch.testing.assert_close(memory.level(i)[2], want, rtol=0, atol=1e-12)
