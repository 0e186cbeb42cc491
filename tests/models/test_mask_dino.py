"""Mask-DINO's parts: mask-box conversion against a naive loop, the per-pixel embedding's shapes and its one
input, the unified query selection (content = the selected tokens, anchors = their masks' boxes), shared
branches, the seg denoising style, and instance-mask post-processing."""

from __future__ import annotations

import pytest
import torch

import matchdetr
from matchdetr.boxes import inverse_sigmoid
from matchdetr.models.plugins.denoising import DenoisingSpec, build_denoising
from matchdetr.models.plugins.mask_query_selection import mask_boxes
from matchdetr.models.postprocess import instance_masks
from matchdetr.structures import Target

SMALL = dict(transformer__hidden_dim=32, transformer__num_heads=4, transformer__dim_feedforward=64,
             transformer__enc_layers=1, transformer__dec_layers=2, transformer__num_queries=12,
             **{"backbone.weights": "", "arch.mask_dim": 16, "arch.encoder_ffn_dim": 64})


def test_mask_boxes_equal_a_naive_loop():
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(2, 5, 7, 9, generator=g) > 0.8
    masks[0, 0] = False  # empty -> the zero box
    valid = torch.tensor([[9.0, 7.0], [6.0, 5.0]])
    got = mask_boxes(masks, valid)
    for b in range(2):
        for k in range(5):
            ys, xs = torch.nonzero(masks[b, k], as_tuple=True)
            if len(xs) == 0:
                want = torch.zeros(4)
            else:
                x0, x1 = xs.min() / valid[b, 0], (xs.max() + 1) / valid[b, 0]
                y0, y1 = ys.min() / valid[b, 1], (ys.max() + 1) / valid[b, 1]
                want = torch.tensor([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]).clamp(0, 1)
            torch.testing.assert_close(got[b, k], want)


def _model(name="maskdino-tiny"):
    torch.manual_seed(0)
    return matchdetr.build(name, num_classes=5, **SMALL)


def test_pixel_embedding_and_query_selection():
    det = _model().eval()
    images, mask = torch.randn(2, 3, 128, 160), torch.zeros(2, 128, 160, dtype=torch.bool)
    mask[1, :, 120:] = True
    memory = det.fusion(det.encoder(det.neck(det.backbone(images, mask), mask)))
    assert memory.fine is not None and memory.pixel_embed is not None
    assert memory.pixel_embed.shape == (2, 16, 32, 40)  # stride 4, mask_dim channels
    queries = det.queries(memory, None, det.head)
    sets = {s.suffix: s.prediction for s in queries.proposals}
    enc, init = sets["_enc"], sets["_init"]
    # the anchors are the boxes of the selected proposals' masks, of each image's valid extent, through logit
    # space and back as the release passes them (edges at 0 or 1 end 1e-5 inside)
    valid = memory.valid_ratios[:, 0] * torch.tensor([40.0, 32.0])
    torch.testing.assert_close(queries.reference, inverse_sigmoid(mask_boxes(enc.masks > 0, valid)).sigmoid(), rtol=0, atol=0)
    torch.testing.assert_close(init.boxes, queries.reference)
    assert not queries.content.requires_grad or queries.content.grad_fn is None  # detached selected tokens
    assert enc.masks.shape == init.masks.shape == (2, 12, 32, 40)


def test_branches_are_shared_and_train_step_runs():
    det = _model().train()
    head = det.head
    assert len(head.detection.class_embed) == 1 and len(head.detection.bbox_embed) == 1
    images = torch.randn(2, 3, 128, 160)
    m = torch.zeros(2, 128, 160, dtype=torch.bool)
    m[0, 20:60, 30:90] = True
    m[1, 70:120, 10:40] = True
    targets = [Target(torch.tensor([[0.375, 0.3125, 0.375, 0.3125]]), torch.tensor([1]), 0, (128, 160), (128, 160), masks=m[:1]),
               Target(torch.tensor([[0.15625, 0.7578, 0.1875, 0.3906]]), torch.tensor([3]), 1, (128, 160), (128, 160), masks=m[1:])]
    out = det(images, None, targets)
    assert out.masks.shape == (2, 12, 32, 40)
    suffixes = {s.suffix for s in out.extra}
    assert {"_enc", "_init", "_dn"} <= suffixes
    assert all(s.prediction.masks is not None for s in out.extra)
    sum(s.prediction.masks.sum() for s in out.extra).backward()
    assert head.mask_embed.layers[0].weight.grad is not None


def test_eval_computes_only_the_last_layers_masks():
    # In eval only the final masks are read (post-processing); the earlier layers' classes and boxes stay for
    # the unstable score. The final masks are the same either way.
    det = _model().eval()
    images = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        out = det(images)
        head = det.head
        memory = det.fusion(det.encoder(det.neck(det.backbone(images, torch.zeros(1, 128, 160, dtype=torch.bool)),
                                                   torch.zeros(1, 128, 160, dtype=torch.bool))))
        decoded = det.decoder(det.queries(memory, None, det.head), memory)
        head.train()
        every = head(decoded.hidden, decoded.references, memory)
        head.eval()
    assert out.masks is not None and out.masks.shape == (1, 12, 32, 40)
    assert out.aux and all(p.masks is None and p.boxes.shape == (1, 12, 4) for p in out.aux)
    assert all(p.masks is not None for p in every)
    torch.testing.assert_close(out.masks, every[-1].masks)


def test_seg_denoising_groups_follow_the_batch():
    label_enc = torch.nn.Embedding(6, 8)
    t = [Target(torch.rand(30, 4) * 0.5 + 0.25, torch.zeros(30, dtype=torch.long), 0, (10, 10), (10, 10))]
    spec = DenoisingSpec("mask_dino", dn_number=100, label_noise=0.4, box_noise=0.4)
    dn = build_denoising(t, 10, label_enc, 5, spec, torch.Generator().manual_seed(0))
    assert dn is not None and dn.groups == 3 and dn.pad == 30  # 100 // 30 groups of positives only
    many = [Target(torch.rand(120, 4) * 0.5 + 0.25, torch.zeros(120, dtype=torch.long), 0, (10, 10), (10, 10))]
    assert build_denoising(many, 10, label_enc, 5, spec) is None  # more GT than dn_number: none, as released


def test_instance_masks_cut_the_valid_image_and_score():
    logits = torch.full((1, 8, 10), -5.0)
    logits[0, :4, :5] = 5.0  # the top-left quarter of the padded 32x40 input
    masks, score = instance_masks(logits, torch.tensor([16, 20]), torch.tensor([32, 40]))
    assert masks.shape == (1, 32, 40)
    assert masks[0, :28, :36].all() and not masks[0, 34:, :].any()  # the valid 16x20 image fills the output
    assert 0.9 < float(score[0]) <= 1.0


def test_onnx_export_of_the_masks_follows_the_input_size(tmp_path):
    """The exported graph gives the masks (and everything else) of PyTorch at two sizes it was not traced at."""
    from matchdetr.inference.export import check_onnx, export_onnx

    det = _model().eval()
    path = export_onnx(det.module, det.config, det.label_map, tmp_path / "m.onnx", topk=10, sample_size=(128, 160))
    worst = check_onnx(det.module, path, sizes=((160, 160), (128, 224)))
    assert set(worst) >= {"logits", "boxes", "masks"}
    assert worst["masks"] < 1e-3 and worst["logits"] < 1e-3 and worst["boxes"] < 1e-4, worst


# MaskDINO-R50 (80 classes), counted from the release's module definitions (IDEA-Research/MaskDINO,
# maskdino_R50_bs16_50ep_3s.yaml): backbone 23,454,912 (conv weights; FrozenBN holds buffers) + pixel decoder,
# decoder and heads 20,361,524. Ours adds 768: the mask head's own LayerNorm (512; the release re-applies its
# decoder norm) and the denoising label embedding's padding row (256).
RELEASE_R50 = 23_454_912 + 20_361_524


def test_full_size_parameter_count_against_the_release():
    for name in ("maskdino-r50", "stable-maskdino-r50"):
        det = matchdetr.build(name, num_classes=80, **{"backbone.weights": None})
        assert sum(p.numel() for p in det.parameters()) == RELEASE_R50 + 768, name
        # FREEZE_AT 0: every weight is trained, as in the release (its 43,816,436 all trainable)
        assert sum(p.numel() for p in det.parameters() if p.requires_grad) == RELEASE_R50 + 768, name


@pytest.mark.slow
@pytest.mark.parametrize("name", ["maskdino-r50", "stable-maskdino-r50"])
def test_full_size_trains_one_iteration(name):
    from matchdetr.compose import build_criterion

    torch.manual_seed(0)
    det = matchdetr.build(name, num_classes=80, **{"backbone.weights": ""}).train()
    crit = build_criterion(det.config.model)
    images = torch.randn(2, 3, 256, 320)
    m = torch.zeros(2, 256, 320, dtype=torch.bool)
    m[0, 40:120, 60:180] = True
    m[1, 140:250, 20:80] = True
    targets = [Target(torch.tensor([[0.375, 0.3125, 0.375, 0.3125]]), torch.tensor([1]), 0, (256, 320), (256, 320), masks=m[:1]),
               Target(torch.tensor([[0.15625, 0.7617, 0.1875, 0.4297]]), torch.tensor([7]), 1, (256, 320), (256, 320), masks=m[1:])]
    opt = torch.optim.AdamW([p for p in det.parameters() if p.requires_grad], lr=1e-4)
    loss = crit(det(images, None, targets), targets)
    assert torch.isfinite(loss.total) and {"loss_mask", "loss_dice", "loss_mask_enc", "loss_dice_dn"} <= set(loss.losses)
    loss.total.backward()
    opt.step()


def test_cli_predict_writes_masks(tmp_path):
    """``matchdetr predict`` on a mask model: each detection carries its RLE, the PNG shows the masks filled."""
    import json

    import numpy as np
    from PIL import Image

    from matchdetr.cli import main
    from matchdetr.reports.visualize import MASK_ALPHA, class_color, draw_detections

    det = _model()
    det.save(str(tmp_path / "m.safetensors"))
    Image.fromarray(np.full((60, 80, 3), 90, np.uint8)).save(tmp_path / "a.png")
    assert main(["predict", "--checkpoint", str(tmp_path / "m.safetensors"), str(tmp_path / "a.png"),
                 "--out", str(tmp_path / "out"), "--threshold", "0"]) == 0
    record = json.loads((tmp_path / "out" / "detections.json").read_text())[0]
    assert record["detections"] and all(d["segmentation"]["size"] == [60, 80] for d in record["detections"])
    image = Image.fromarray(np.zeros((40, 40, 3), np.uint8))
    mask = np.zeros((1, 40, 40), bool)
    mask[0, :20] = True  # the top half; the box is drawn elsewhere
    drawn = np.asarray(draw_detections(image, [[30, 30, 38, 38]], [0.9], ["x"], masks=mask, max_dets=1))
    assert drawn[10, 10].tolist() == [round(MASK_ALPHA * c) for c in class_color("x")]  # filled at MASK_ALPHA
    assert drawn[25, 10].tolist() == [0, 0, 0]  # outside the mask and the box: untouched
