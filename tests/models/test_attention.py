import torch
from torch import nn

from matchdetr.models.attention import MultiheadAttention


def test_matches_torch_multihead_attention():
    torch.manual_seed(0)
    ours = MultiheadAttention(16, 4)
    ref = nn.MultiheadAttention(16, 4, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    q, k = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[1, 5:] = True
    am = torch.zeros(5, 7, dtype=torch.bool)
    am[0, :3] = True
    got = ours(q, k, k, key_padding_mask=pad, attn_mask=am)
    want, _ = ref(q, k, k, key_padding_mask=pad, attn_mask=am)
    assert torch.allclose(got, want, atol=1e-5)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())


def test_bias_is_added_to_logits():
    torch.manual_seed(1)
    att = MultiheadAttention(8, 2)
    q, k = torch.randn(1, 3, 8), torch.randn(1, 4, 8)
    bias = torch.full((1, 2, 3, 4), -1e9)
    bias[..., 2] = 0  # force every query to attend key 2 only
    out = att(q, k, k, attn_bias=bias)
    v = att.out_proj(att.v_proj(k)[:, 2:3].expand(1, 3, 8))
    assert torch.allclose(out, v, atol=1e-5)


def test_fully_masked_row_stays_finite():
    att = MultiheadAttention(8, 2)
    out = att(torch.randn(1, 2, 8), torch.randn(1, 3, 8), torch.randn(1, 3, 8), key_padding_mask=torch.ones(1, 3, dtype=torch.bool))
    assert torch.isfinite(out).all()
