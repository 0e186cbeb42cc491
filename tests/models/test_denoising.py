"""Denoising (DN-DETR / DINO), hybrid matching (H-DETR) and look forward twice (DINO)."""

from __future__ import annotations

import pytest
import torch

import matchdetr
from matchdetr.boxes import cxcywh_to_xyxy
from matchdetr.losses.focal import one_hot_targets
from matchdetr.compose import build_criterion
from matchdetr.models.plugins.denoising import DenoisingSpec, build_denoising, denoising_mask
from matchdetr.models.queries import Queries
from matchdetr.structures import Target

SMALL = dict(transformer__hidden_dim=32, transformer__num_heads=4, transformer__dim_feedforward=64,
             transformer__enc_layers=1, transformer__dec_layers=3, transformer__num_queries=10)


def targets(counts=(3, 1)):
    g = torch.Generator().manual_seed(0)
    return [Target(torch.cat((torch.rand(n, 2, generator=g) * 0.4 + 0.3, torch.rand(n, 2, generator=g) * 0.2 + 0.1), 1),
                   torch.randint(0, 5, (n,), generator=g), i, (128, 128), (128, 128)) for i, n in enumerate(counts)]


def test_mask_blocks_matching_from_dn_and_groups_from_each_other():
    m = denoising_mask(groups=3, pad=2, num_queries=4, device=torch.device("cpu"))
    assert m.shape == (10, 10)
    assert m[6:, :6].all() and not m[6:, 6:].any()  # matching queries see no DN query
    assert not m[:6, 6:].any()  # DN queries may read the matching queries
    for g in range(3):
        inside = slice(2 * g, 2 * g + 2)
        assert not m[inside, inside].any()
        others = [i for i in range(6) if not 2 * g <= i < 2 * g + 2]
        assert m[inside][:, others].all()


@pytest.mark.parametrize("name", ["dino-tiny", "dn-deformable-detr-tiny"])
def test_perturbing_one_group_changes_nothing_elsewhere(name):
    """Perturb group 0's content queries: other groups' and the matching queries' outputs must not move."""
    torch.manual_seed(0)
    det = matchdetr.build(name, num_classes=5, **SMALL).eval()
    memory = det.encoder(det.neck(det.backbone(torch.randn(2, 3, 128, 128), torch.zeros(2, 128, 128, dtype=torch.bool)),
                                  torch.zeros(2, 128, 128, dtype=torch.bool)))
    base = det.queries.base(memory, None, det.head)
    spec = det.queries.spec
    dn = build_denoising(targets(), base.content.shape[1], det.queries.label_enc, 5, spec, torch.Generator().manual_seed(1))
    content = torch.cat((dn.content, base.content), 1)
    reference = torch.cat((dn.reference, base.reference), 1)

    def run(c):
        return det.decoder(Queries(content=c, pos=None, reference=reference, self_attn_mask=dn.attn_mask), memory).hidden

    ref_out = run(content)
    bumped = content.clone()
    bumped[:, : dn.pad] += torch.randn_like(bumped[:, : dn.pad])
    out = run(bumped)
    assert not torch.allclose(out[:, :, : dn.pad], ref_out[:, :, : dn.pad])  # the perturbation took effect
    assert torch.allclose(out[:, :, dn.pad :], ref_out[:, :, dn.pad :], atol=1e-6)  # nothing else moved


def test_contrastive_noise_ranges_and_negatives_are_background():
    tg = [Target(torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.4, 0.6, 0.1, 0.2]]), torch.tensor([1, 3]), 0, (9, 9), (9, 9))]
    emb = torch.nn.Embedding(6, 8)
    spec = DenoisingSpec("dino", dn_number=10, label_noise=0.0, box_noise=0.4)
    dn = build_denoising(tg, 5, emb, 5, spec, torch.Generator().manual_seed(0))
    assert dn.groups == 5 and dn.pad == 4  # groups = dn_number // max_gt; pad = positives + negatives
    (q, gt), = dn.assignment.indices
    assert len(q) == 2 * 5
    positives = set(q.tolist())
    for g in range(dn.groups):
        for c in range(2):
            for j in range(2):
                slot = g * dn.pad + c * 2 + j
                half = tg[0].boxes[j, 2:].repeat(2) / 2 * spec.box_noise
                u = ((cxcywh_to_xyxy(dn.reference[0, slot]) - cxcywh_to_xyxy(tg[0].boxes[j])) / half).abs()
                if c == 0:
                    assert slot in positives and (u < 1 + 1e-5).all()
                else:
                    assert slot not in positives and (u >= 1 - 1e-5).all() and (u < 2 + 1e-5).all()
    # one-hot targets of the DN set: negatives (not assigned) are all-zero rows, i.e. background
    logits = torch.zeros(1, dn.num_dn, 5)
    onehot = one_hot_targets(logits, tg, dn.assignment.indices)
    negatives = [s for s in range(dn.num_dn) if s not in positives]
    assert onehot[0, negatives].sum() == 0 and onehot[0, sorted(positives)].sum(-1).eq(1).all()


def test_dn_detr_style_positive_only_noise():
    tg = targets((2,))
    dn = build_denoising(tg, 4, torch.nn.Embedding(6, 8), 5, DenoisingSpec("dn_detr", groups=3, label_noise=0.0, box_noise=0.4),
                         torch.Generator().manual_seed(0))
    assert dn.groups == 3 and dn.pad == 2 and len(dn.assignment.indices[0][0]) == 6
    b = tg[0].boxes.repeat(3, 1)
    r = dn.reference[0]
    assert ((r[:, :2] - b[:, :2]).abs() <= 0.4 * b[:, 2:] / 2 + 1e-6).all()  # centre within lambda*wh/2
    assert ((r[:, 2:] - b[:, 2:]).abs() <= 0.4 * b[:, 2:] + 1e-6).all()  # size within +-40 %


def test_dn_loss_uses_fixed_assignment_and_outputs_are_split():
    torch.manual_seed(0)
    det = matchdetr.build("dino-tiny", num_classes=5, **SMALL).train()
    tg = targets()
    out = det(torch.randn(2, 3, 160, 160), None, tg)
    assert out.logits.shape[1] == 10  # matching queries only
    dn_sets = [s for s in out.extra if s.suffix.endswith("_dn")]
    assert [s.suffix for s in dn_sets] == ["_dn", "_aux0_dn", "_aux1_dn"]
    assert all(s.assignment is not None and s.num_boxes_factor == 100 // 3 for s in dn_sets)
    losses = build_criterion(det.config.model)(out, tg).losses
    assert {"loss_class_dn", "loss_bbox_aux1_dn", "loss_giou_enc"} <= set(losses)
    det.eval()
    out = det(torch.randn(2, 3, 160, 160), None, tg)
    assert out.logits.shape[1] == 10 and not [s for s in out.extra if "_dn" in s.suffix]


def test_one_to_many_branch_only_in_training():
    torch.manual_seed(0)
    det = matchdetr.build("h-deformable-detr-tiny", num_classes=5, **SMALL).train()
    x = torch.randn(2, 3, 256, 256)
    out = det(x, None, targets())
    o2m = [s for s in out.extra if s.suffix.endswith("_o2m")]
    assert out.logits.shape[1] == 10 and len(o2m) == 3
    assert all(s.target_repeat == 6 and s.prediction.logits.shape[1] == 300 for s in o2m)
    losses = build_criterion(det.config.model)(out, targets()).losses
    assert "loss_class_o2m" in losses and "loss_giou_aux1_o2m" in losses
    det.eval()
    out = det(x)
    assert out.logits.shape[1] == 10 and not [s for s in out.extra if "_o2m" in s.suffix]


def test_look_forward_twice_passes_gradient_to_the_previous_layer():
    torch.manual_seed(0)

    def grads(lft: bool):
        det = matchdetr.build("dino-tiny", num_classes=5, arch__look_forward_twice=lft,
                              denoising="none", **SMALL).train()
        out = det(torch.randn(1, 3, 160, 160), None, targets((1,)))
        out.boxes.sum().backward()  # the last layer's boxes only
        return det.head.bbox_embed[1].layers[-1].weight.grad  # the previous layer's box head

    assert grads(False) is None or grads(False).abs().sum() == 0
    assert grads(True).abs().sum() > 0


def test_batch_without_ground_truth_keeps_every_parameter_in_the_graph():
    """DDP needs a gradient for every parameter on every process, also when a batch has no GT."""
    torch.manual_seed(0)
    det = matchdetr.build("dino-tiny", num_classes=5, **SMALL).train()
    empty = [Target(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), i, (9, 9), (9, 9)) for i in range(2)]
    out = det(torch.randn(2, 3, 160, 160), None, empty)
    build_criterion(det.config.model)(out, empty).total.backward()
    missing = [n for n, p in det.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


def test_negative_denoising_boxes_keep_a_positive_size():
    tg = [Target(torch.tensor([[0.5, 0.5, 0.2, 0.2]]), torch.tensor([1]), 0, (9, 9), (9, 9))]
    dn = build_denoising(tg, 5, torch.nn.Embedding(6, 8), 5, DenoisingSpec("dino", dn_number=200, box_noise=1.0),
                         torch.Generator().manual_seed(0))
    assert (dn.reference[..., 2:] > 0).all()


def test_only_the_first_refining_head_starts_small():
    det = matchdetr.build("deformable-detr-refine-tiny", num_classes=3)
    biases = [h.layers[-1].bias[2:].tolist() for h in det.head.bbox_embed]
    assert biases[0] == [-2.0, -2.0] and all(b == [0.0, 0.0] for b in biases[1:])
