"""SAM-DETR / SAM-DETR++ / SMCA: official parameter counts, the aligner's geometry, the per-head attention and
SMCA against direct transcriptions of the formulas, the coarse-to-fine schedule, and denoising isolation."""

from __future__ import annotations

import math

import pytest
import torch

import matchdetr
from matchdetr import presets
from matchdetr.models.plugins.denoising import build_denoising
from matchdetr.models.plugins.semantic_aligner import SemanticAligner
from matchdetr.models.plugins.smca import BETA, gaussian_logits
from matchdetr.models.queries import Queries
from matchdetr.models.sam_attention import PerHeadQueryCrossAttention
from matchdetr.models.plugins.coarse_to_fine import coarse_to_fine
from matchdetr.ops.roi_align import roi_align
from matchdetr.structures import Target

SMALL = dict(transformer__hidden_dim=32, transformer__num_heads=4, transformer__dim_feedforward=64,
             transformer__enc_layers=1, transformer__num_queries=10)


def trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# Official training logs of ZhangGongjie/SAM-DETR (91 classes, ResNet-50 stem + layer1 frozen).
OFFICIAL = [
    ("sam-detr-r50", {}, 58_073_546),
    ("sam-detr-r50", {"arch.group_norm": True}, 58_074_058),
    ("sam-detr-smca-r50", {}, 58_122_794),
    ("sam-detr-plus-plus-r50", {}, 54_972_298),
    ("sam-detr-plus-plus-smca-r50", {}, 55_021_546),
]


@pytest.mark.parametrize("name,overrides,count", OFFICIAL)
def test_official_trainable_parameter_counts(name, overrides, count):
    assert trainable(matchdetr.build(name, num_classes=91, **overrides)) == count


def test_variants_add_exactly_their_parts():
    """DC5 adds nothing; DN-DETR adds only the label embedding (92 x 256); SMCA with the aligner adds only 2M
    outputs to each layer's keypoint MLP; SMCA-DETR adds a centre MLP and a scale Linear per layer to DETR."""
    count = lambda n: trainable(matchdetr.build(n, num_classes=91))  # noqa: E731
    base, smca = 58_073_546, 58_122_794
    assert count("sam-detr-r50-dc5") == base
    assert count("sam-detr-dn-r50") == base + 92 * 256
    assert count("sam-detr-smca-dn-r50") == smca + 92 * 256
    assert smca - base == 6 * (512 * 16 + 16)
    assert count("sam-detr-plus-plus-smca-dn-r50") == 55_021_546 + 92 * 256
    predictor = (256 * 256 + 256) * 2 + (256 * 2 + 2) + (256 * 16 + 16)
    assert count("smca-detr-r50") == count("detr-r50") + 6 * predictor


def _aligner(resample="keypoints_M", search_range="box", reweight=True, extra=0, scale=1.0):
    torch.manual_seed(0)
    aligner = SemanticAligner(16, 4, resample, reweight, search_range, extra_outputs=extra).double()
    with torch.no_grad():
        for p in aligner.parameters():
            p.mul_(scale)
    return aligner


def _inputs(b=2, n=5, d=16, h=9, w=11):
    g = torch.Generator().manual_seed(1)
    ref = torch.cat((torch.rand(b, n, 2, generator=g) * 0.6 + 0.2, torch.rand(b, n, 2, generator=g) * 0.3 + 0.05), -1)
    return (torch.randn(b, n, d, generator=g).double(), ref.double(), torch.randn(b, d, h, w, generator=g).double(),
            torch.tensor([[1.0, 1.0], [0.7, 0.8]], dtype=torch.float64))


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_keypoints_never_leave_their_box(scale):
    """``box`` mode: keypoint = centre + 0.5 * wh * tanh(.), strictly inside the box even when the keypoint
    MLP saturates (weights scaled 30x)."""
    aligner = _aligner(scale=scale)
    tgt, ref, fmap, vr = _inputs()
    points = aligner(tgt, ref, fmap, vr).points  # [B, N, M, 2]
    lo, hi = (ref[..., :2] - ref[..., 2:] / 2)[:, :, None], (ref[..., :2] + ref[..., 2:] / 2)[:, :, None]
    assert ((points >= lo) & (points <= hi)).all()
    image = _aligner("keypoints_M", "image", scale=scale)(tgt, ref, fmap, vr).points
    assert ((image >= 0) & (image <= 1)).all()


def test_keypoint_features_are_region_samples_and_padding_is_ignored():
    """A padded image gives the same aligned queries as its unpadded crop (boxes follow the valid ratio), and
    a keypoint at the box centre reads the centre of the 7x7 region."""
    aligner = _aligner()
    tgt, ref, fmap, _ = _inputs(b=1)
    valid = fmap[:, :, :6, :8]
    padded = torch.nn.functional.pad(valid, (0, 3, 0, 3), value=5.0)  # 9 x 11 map, garbage in the padding
    vr_pad = torch.tensor([[8 / 11, 6 / 9]], dtype=torch.float64)
    a = aligner(tgt, ref, padded, vr_pad)
    b = aligner(tgt, ref, valid, torch.ones(1, 2, dtype=torch.float64))
    torch.testing.assert_close(a.content, b.content)
    torch.testing.assert_close(a.pos, b.pos)
    # avg_pool without reweighting is the mean of the RoIAlign region, the same for every head
    pool = _aligner("avg_pool", reweight=False)(tgt, ref, valid, torch.ones(1, 2, dtype=torch.float64))
    xyxy = torch.cat((ref[..., :2] - ref[..., 2:] / 2, ref[..., :2] + ref[..., 2:] / 2), -1) * torch.tensor([8, 6, 8, 6])
    region = roi_align(valid, xyxy, 7)
    torch.testing.assert_close(pool.content, region.mean((-1, -2))[:, :, None].expand_as(pool.content))


@pytest.mark.parametrize("resample", ["avg_pool", "max_pool", "keypoint_1", "keypoints_M"])
@pytest.mark.parametrize("reweight", [True, False])
def test_ablation_options_shapes(resample, reweight):
    tgt, ref, fmap, vr = _inputs()
    out = _aligner(resample, reweight=reweight)(tgt, ref, fmap, vr)
    assert out.content.shape == out.pos.shape == (2, 5, 4, 16) and out.points.shape == (2, 5, 4, 2)
    if resample != "keypoints_M":  # one vector for all heads
        assert torch.equal(out.points[:, :, :1].expand_as(out.points), out.points)


def test_per_head_cross_attention_matches_the_formula():
    """q_h = Lin(Q_h) + MLP(P_h), k = Lin(mem) + MLP(pos), v split in d/M per head, logits / sqrt(d)."""
    torch.manual_seed(0)
    b, n, m, d, s = 2, 3, 4, 8, 5
    attn = PerHeadQueryCrossAttention(d, m).double()
    content, pos = torch.randn(b, n, m, d).double(), torch.randn(b, n, m, d).double()
    mem, mem_pos = torch.randn(b, s, d).double(), torch.randn(b, s, d).double()
    pad = torch.zeros(b, s, dtype=torch.bool)
    pad[1, -2:] = True
    bias = torch.randn(b, m, n, s).double()
    out = attn(content, pos, mem, mem_pos, pad, bias)
    k = attn.k_content(mem) + attn.k_pos(mem_pos)
    v = attn.v_proj(mem)
    heads = []
    for h in range(m):
        q = attn.q_content(content[:, :, h]) + attn.q_pos(pos[:, :, h])
        logits = q @ k.transpose(1, 2) / math.sqrt(d) + bias[:, h]
        logits = logits.masked_fill(pad[:, None], float("-inf"))
        heads.append(logits.softmax(-1) @ v[..., h * d // m:(h + 1) * d // m])
    torch.testing.assert_close(out, attn.out_proj(torch.cat(heads, -1)))


def test_smca_gaussian_matches_the_formula():
    torch.manual_seed(0)
    centres, scales = torch.rand(1, 2, 3, 2).double(), torch.randn(1, 2, 3, 2).double()
    vr = torch.tensor([[0.5, 0.75]], dtype=torch.float64)
    g = gaussian_logits(centres, scales, torch.zeros(4, 6), vr)
    assert g.shape == (1, 3, 2, 24)
    for q in range(2):
        for h in range(3):
            cx, cy = centres[0, q, h, 0] * 6 * 0.5, centres[0, q, h, 1] * 4 * 0.75
            sx, sy = scales[0, q, h]
            for jy in range(4):
                for jx in range(6):
                    want = -(sx**2 * (cx - jx - 0.5) ** 2 + sy**2 * (cy - jy - 0.5) ** 2) / BETA
                    torch.testing.assert_close(g[0, h, q, jy * 6 + jx], want)


def test_coarse_to_fine_schedule():
    assert coarse_to_fine(6, 3) == [2, 2, 1, 1, 0, 0]
    assert coarse_to_fine(3, 3) == [2, 1, 0]
    assert coarse_to_fine(6, 1) == [0] * 6


def _memory(det, size=128):
    images, mask = torch.randn(2, 3, size, size), torch.zeros(2, size, size, dtype=torch.bool)
    mask[1, :, 100:] = True
    return det.encoder(det.neck(det.backbone(images, mask), mask))


def test_each_multiscale_layer_reads_only_its_level():
    """SAM-DETR++ tiny (3 layers on levels 2, 1, 0): changing the finest level moves only the last layer."""
    torch.manual_seed(0)
    det = matchdetr.build("sam-detr-plus-plus-tiny", num_classes=5, **SMALL).eval()
    memory = _memory(det)
    queries = det.queries(memory, None, det.head)
    with torch.no_grad():
        before = det.decoder(queries, memory).hidden
        h, w = memory.shapes[0]
        memory.tokens[:, : h * w] += 1.0  # level 0 (stride 16) comes first in the flattened memory
        after = det.decoder(queries, memory).hidden
    assert torch.equal(before[:2], after[:2]) and not torch.allclose(before[2], after[2])


def test_level_view_is_the_level_itself():
    """CoarseToFine's per-layer memories are slices of the one flattened memory, equal to each level's maps;
    every family runs the one Decoder class; a SAM layer refuses a memory of several levels."""
    from matchdetr.models.decoders import Decoder
    from matchdetr.models.plugins.coarse_to_fine import CoarseToFine

    torch.manual_seed(0)
    det = matchdetr.build("sam-detr-plus-plus-tiny", num_classes=5, **SMALL).eval()
    memory = _memory(det)
    views = CoarseToFine([2, 1, 0])(memory)
    for view, lvl in zip(views, [2, 1, 0]):
        tokens, mask, pos = memory.level(lvl)
        assert view.shapes == [memory.shapes[lvl]]
        assert torch.equal(view.token_map(0), tokens) and torch.equal(view.level_mask(0), mask)
        assert torch.equal(view.pos, pos.flatten(2).transpose(1, 2))
        assert torch.equal(view.valid_ratios[:, 0], memory.valid_ratios[:, lvl])
    with pytest.raises(ValueError, match="reads level 3"):
        CoarseToFine([3, 0])(memory)
    with pytest.raises(ValueError, match="one memory level"):
        det.decoder.layers[0](torch.zeros(2, 10, 32), None, memory, None, torch.full((2, 10, 4), 0.5))
    for name in presets.names():
        if name.endswith("-tiny"):
            assert type(matchdetr.build(name, num_classes=5, **{"backbone.weights": ""}).decoder) is Decoder, name


def _targets(shift=0.0, labels=(1, 3, 2)):
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.3, 0.6, 0.1, 0.2], [0.7, 0.3, 0.3, 0.2]]) + shift
    return [Target(boxes, torch.tensor(labels), 0, (128, 128), (128, 128)),
            Target(boxes[:1], torch.tensor(labels[:1]), 1, (128, 100), (128, 100))]


@pytest.mark.parametrize("name", ["sam-detr-smca-dn-tiny", "sam-detr-plus-plus-smca-dn-tiny"])
def test_denoising_groups_do_not_leak(name):
    """Perturb group 0 (content and noised boxes) or the GT it comes from: the matching queries' outputs and
    every other group's must not move, through neither the self-attention nor the aligner."""
    torch.manual_seed(0)
    det = matchdetr.build(name, num_classes=5, **SMALL).eval()
    memory = _memory(det)
    base = det.queries.base(memory, None)
    spec = det.queries.spec

    def run(targets, bump=False):
        dn = build_denoising(targets, base.content.shape[1], det.queries.label_enc, 5, spec, torch.Generator().manual_seed(1))
        content, reference = torch.cat((dn.content, base.content), 1), torch.cat((dn.reference, base.reference), 1)
        if bump:
            content, reference = content.clone(), reference.clone()
            content[:, : dn.pad] += torch.randn_like(content[:, : dn.pad])
            reference[:, : dn.pad, :2] = (reference[:, : dn.pad, :2] + 0.1).clamp(0.05, 0.95)
        with torch.no_grad():
            out = det.decoder(Queries(content=content, pos=None, reference=reference, self_attn_mask=dn.attn_mask), memory)
        return out.hidden, dn

    ref_out, dn = run(_targets())
    bumped, _ = run(_targets(), bump=True)
    assert not torch.allclose(bumped[:, :, : dn.pad], ref_out[:, :, : dn.pad])
    torch.testing.assert_close(bumped[:, :, dn.pad:], ref_out[:, :, dn.pad:], rtol=0, atol=1e-6)
    other_gt, _ = run(_targets(shift=0.05, labels=(4, 0, 1)))
    assert not torch.allclose(other_gt[:, :, : dn.num_dn], ref_out[:, :, : dn.num_dn])
    torch.testing.assert_close(other_gt[:, :, dn.num_dn:], ref_out[:, :, dn.num_dn:], rtol=0, atol=1e-6)


def test_dropout_is_a_config_value():
    assert presets.get("sam-detr-r50").model.transformer.dropout == 0.1
    assert presets.get("sam-detr-plus-plus-r50").model.transformer.dropout == 0.0
    det = matchdetr.build("sam-detr-tiny", num_classes=5, transformer__dropout=0.3, **SMALL)
    assert det.decoder.layers[0].dropout1.p == 0.3 and det.decoder.layers[0].cross_attn.dropout == 0.3
