"""Deformable-DETR parts against direct transcriptions of their definitions (Zhu et al. 2021)."""

from __future__ import annotations

import math

import pytest
import torch

import matchdetr
from matchdetr.boxes import inverse_sigmoid
from matchdetr.engine.optim import param_groups
from matchdetr.boxes import apply_box_delta as refine_reference
from matchdetr.models.deformable import encoder_reference_points, reference_on_levels
from matchdetr.models.memory import flatten_levels
from matchdetr.models.plugins.query_selection import encoder_proposals, proposal_sine_embed


def _memory(shapes, valid):
    """A Memory with levels of ``shapes`` where image b keeps valid[b] = (h_frac, w_frac) of each map."""
    feats, masks = [], []
    for h, w in shapes:
        feats.append(torch.zeros(len(valid), 4, h, w))
        m = torch.ones(len(valid), h, w, dtype=torch.bool)
        for b, (fh, fw) in enumerate(valid):
            m[b, : math.ceil(h * fh), : math.ceil(w * fw)] = False
        masks.append(m)
    return flatten_levels(feats, masks, [torch.zeros_like(f) for f in feats])


def test_encoder_reference_points_formula():
    mem = _memory([(4, 6), (2, 3)], [(1.0, 1.0), (0.5, 0.5)])
    ref = encoder_reference_points(mem)
    assert ref.shape == (2, 24 + 6, 2, 2)
    vr = mem.valid_ratios
    for b in range(2):
        token = 0
        for (h, w) in [(4, 6), (2, 3)]:
            lvl = 0 if (h, w) == (4, 6) else 1
            for i in range(h):
                for j in range(w):
                    x = (j + 0.5) / (vr[b, lvl, 0] * w)
                    y = (i + 0.5) / (vr[b, lvl, 1] * h)
                    for target_lvl in range(2):
                        assert ref[b, token, target_lvl, 0].item() == pytest.approx((x * vr[b, target_lvl, 0]).item())
                        assert ref[b, token, target_lvl, 1].item() == pytest.approx((y * vr[b, target_lvl, 1]).item())
                    token += 1
    assert encoder_reference_points(mem) is ref  # cached per forward


def test_reference_on_levels_scales_boxes_by_valid_ratio():
    vr = torch.tensor([[[0.5, 0.25], [1.0, 1.0]]])
    box = torch.tensor([[[0.4, 0.8, 0.2, 0.4]]])
    out = reference_on_levels(box, vr)
    assert torch.allclose(out[0, 0, 0], torch.tensor([0.2, 0.2, 0.1, 0.1]))
    assert torch.allclose(out[0, 0, 1], box[0, 0])


def test_refine_reference_formula():
    delta = torch.tensor([[0.3, -0.2, 0.1, 0.5]])
    box = torch.tensor([[0.4, 0.6, 0.2, 0.3]])
    assert torch.allclose(refine_reference(box, delta), torch.sigmoid(delta + inverse_sigmoid(box)))
    point = box[:, :2]
    expect = torch.cat((torch.sigmoid(delta[:, :2] + inverse_sigmoid(point)), torch.sigmoid(delta[:, 2:])), -1)
    assert torch.allclose(refine_reference(point, delta), expect)


def test_encoder_proposals_formula():
    mem = _memory([(4, 4), (2, 2)], [(1.0, 1.0), (0.5, 1.0)])
    logits, valid = encoder_proposals(mem)
    assert logits.shape == (2, 20, 4)
    # image 0, level 0, cell (1, 2): centre ((2 + .5) / 4, (1 + .5) / 4), wh 0.05
    p = torch.sigmoid(logits[0, 1 * 4 + 2])
    assert torch.allclose(p, torch.tensor([2.5 / 4, 1.5 / 4, 0.05, 0.05]), atol=1e-6)
    # level 1 has wh 0.1; image 1's padded rows are invalid (inf)
    assert torch.allclose(torch.sigmoid(logits[0, 16])[2:], torch.tensor([0.1, 0.1]))
    assert not valid[1, 2 * 4].item() and torch.isinf(logits[1, 2 * 4]).all()
    assert valid[0].sum() > 0


def test_proposal_sine_embed_formula():
    coords = torch.tensor([[[0.3, -0.5, 1.0, 0.0]]])
    emb = proposal_sine_embed(coords, num_feats=4)
    assert emb.shape == (1, 1, 16)
    p = torch.sigmoid(coords[0, 0])
    for c in range(4):
        for k in range(4):
            v = p[c] * 2 * math.pi / 10000 ** (2 * (k // 2) / 4)
            expect = math.sin(v) if k % 2 == 0 else math.cos(v)
            assert emb[0, 0, c * 4 + k].item() == pytest.approx(expect, abs=1e-6)


def test_sampling_offsets_and_reference_points_train_at_a_tenth():
    det = matchdetr.build("deformable-detr-tiny", num_classes=3)
    t = det.config.train
    groups = param_groups(det, t.lr, t.lr_backbone, t.weight_decay, {k: t.lr_proj_mult for k in t.lr_proj_names})
    names = {id(p): n for n, p in det.named_parameters()}
    seen = set()
    for g in groups:
        for p in g["params"]:
            n = names[id(p)]
            if "sampling_offsets" in n or "reference_points" in n:
                assert g["lr"] == pytest.approx(t.lr * 0.1), n
                seen.add(n.split(".")[-2])
    assert seen == {"sampling_offsets", "reference_points"}


def test_two_stage_adds_class_agnostic_encoder_set():
    det = matchdetr.build("deformable-detr-two-stage-tiny", num_classes=4).train()
    out = det(torch.randn(1, 3, 96, 96))
    (enc,) = [s for s in out.extra if s.suffix == "_enc"]
    assert enc.class_agnostic and enc.prediction.logits.shape[-1] == 4
    assert torch.isfinite(enc.prediction.boxes).all()
