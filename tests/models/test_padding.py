"""The Detector's padding switches (models/padding.py): with ``padding_is_content`` and ``size_divisibility=32``
a batch of two images of different sizes, padded to the larger, is what the Mask-DINO release computes: the
batch padded on to a multiple of 32 and read whole, its padding as content; boxes come back on each valid image."""

from __future__ import annotations

import copy

import torch

import matchdetr
from matchdetr.models.padding import pad_to_multiple, valid_fraction
from matchdetr.structures import Target

SMALL = dict(transformer__hidden_dim=32, transformer__num_heads=4, transformer__dim_feedforward=64,
             transformer__enc_layers=1, transformer__dec_layers=2, transformer__num_queries=12,
             backbone={"kind": "resnet", "depth": 18, "width": 8, "return_levels": [2, 4, 5]},
             arch__mask_dim=16, arch__encoder_ffn_dim=64)
SIZES = [(68, 90), (52, 110)]  # padded to 68 x 110 by the collate, to 96 x 128 by the release


def _models() -> tuple[matchdetr.Detector, matchdetr.Detector]:
    torch.manual_seed(0)
    masked = matchdetr.build("maskdino-tiny", num_classes=5, arch__padding_is_content=False, arch__size_divisibility=1,
                             **SMALL)
    content = copy.deepcopy(masked)
    content.padding_is_content, content.size_divisibility = True, 32  # what the Mask-DINO preset sets
    assert matchdetr.build("maskdino-tiny", num_classes=5, **SMALL).config.model.arch.padding_is_content
    return masked, content


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randn(2, 3, 68, 110, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 68, 110, dtype=torch.bool)
    for i, (h, w) in enumerate(SIZES):
        mask[i, :h, :w] = False
    return images * ~mask[:, None], mask


def test_pad_to_multiple_and_valid_fraction():
    images, mask = _batch()
    padded, pmask = pad_to_multiple(images, mask, 32)
    assert padded.shape[-2:] == (96, 128) and torch.equal(padded[..., :68, :110], images) and not padded[..., 68:, :].any()
    assert pmask[:, 68:].all() and pmask[:, :, 110:].all() and torch.equal(pmask[:, :68, :110], mask)
    assert pad_to_multiple(padded, pmask, 32)[0] is padded
    frac = valid_fraction(pmask, torch.float32)
    torch.testing.assert_close(frac, torch.tensor([[90 / 128, 68 / 96] * 2, [110 / 128, 52 / 96] * 2]))


def test_padding_is_content_as_the_release_reads_a_batch():
    masked, content = _models()
    images, mask = _batch()
    release_input = pad_to_multiple(images, mask, 32)[0]  # ImageList.from_tensors(images, 32)
    frac = valid_fraction(pad_to_multiple(images, mask, 32)[1], torch.float32)
    with torch.no_grad():
        got = content.eval()(images, mask)
        want = masked.eval()(release_input, torch.zeros(2, 96, 128, dtype=torch.bool))  # no mask: all content
        also = masked(images, mask)  # the padding masked out (every other family)
    assert torch.equal(got.logits, want.logits) and torch.equal(got.masks, want.masks)
    torch.testing.assert_close(got.boxes, want.boxes / frac[:, None], rtol=0, atol=1e-6)  # on each valid image
    # in pixels: the release scales its boxes by the padded input's size (maskdino.py box_postprocess)
    wh_valid = torch.tensor([[w, h, w, h] for h, w in SIZES], dtype=torch.float32)[:, None]
    torch.testing.assert_close(got.boxes * wh_valid, want.boxes * torch.tensor([128.0, 96.0] * 2), rtol=0, atol=1e-4)
    assert not torch.allclose(also.logits, got.logits, atol=1e-3)  # the switch matters on a padded batch
    assert got.masks.shape[-2:] == (24, 32)  # stride 4 of the 96 x 128 input the model saw


def test_padding_is_content_in_training_moves_the_ground_truth():
    """Denoising reads the ground truth inside the model: it gets the boxes on the padded input, and every
    supervised set (final, auxiliary, proposals, initial, denoising) comes back on each valid image."""
    masked, content = _models()
    images, mask = _batch()
    padded, pmask = pad_to_multiple(images, mask, 32)
    frac = valid_fraction(pmask, torch.float32)
    boxes = [torch.tensor([[0.5, 0.5, 0.4, 0.3], [0.3, 0.6, 0.2, 0.2]]), torch.tensor([[0.6, 0.4, 0.5, 0.5]])]
    targets = [Target(b, torch.arange(len(b)), i, s, s) for i, (b, s) in enumerate(zip(boxes, SIZES))]
    on_input = [Target(b * frac[i], t.labels, i, t.orig_size, t.size) for i, (b, t) in enumerate(zip(boxes, targets))]
    torch.manual_seed(3)
    got = content.train()(images, mask, targets)
    torch.manual_seed(3)
    want = masked.train()(padded, torch.zeros_like(pmask), on_input)
    got_sets, want_sets = got.supervision(), want.supervision()
    assert [s.suffix for s in got_sets] == [s.suffix for s in want_sets] and any(s.suffix == "_dn" for s in got_sets)
    for g, w in zip(got_sets, want_sets):
        assert torch.equal(g.prediction.logits, w.prediction.logits), g.suffix
        torch.testing.assert_close(g.prediction.boxes, w.prediction.boxes / frac[:, None], rtol=0, atol=1e-6)


def test_onnx_export_pads_as_the_model_does(tmp_path):
    """An exported graph pads to the multiple of 32 at whatever size it is given, as the PyTorch model does."""
    from matchdetr.inference.export import check_onnx, export_onnx

    _, content = _models()
    content.eval()
    path = export_onnx(content.module, content.config, content.label_map, tmp_path / "m.onnx", topk=10, sample_size=(96, 128))
    worst = check_onnx(content.module, path, sizes=((68, 110), (64, 64)))
    assert worst["masks"] < 1e-3 and worst["logits"] < 1e-3 and worst["boxes"] < 1e-4, worst
