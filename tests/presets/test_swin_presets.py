"""The Swin presets at full size, built on the meta device, against the release's parameter counts.

The release figures (detrex's modules, 80 classes, tied heads counted once): Swin-T backbone 27,520,506, Swin-L
195,200,820, DINO-4scale Swin-T 48,193,350, DINO-4scale Swin-L 217,987,200, Stable-DINO-4scale Swin-L
218,446,720 (the paper's "218M", table 10). Ours are 256 more, one tensor row: our DN label embedding has
``num_classes + 1`` rows (the last one embeds the padding of the denoising groups) where detrex's has
``num_classes``. The presets without a published figure are checked part by part against their ResNet-50 preset:
only the backbone and the neck's input projections change, by the channel arithmetic written out below.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from matchdetr import presets
from matchdetr.compose import build_model

# total at 80 classes as counted on the release's modules
RELEASE = {"dino-4scale-swin-t": 48_193_350, "dino-4scale-swin-l": 217_987_200,
           "stable-dino-4scale-swin-l": 218_446_720}
SWIN_T, SWIN_L = 27_520_506, 195_200_820  # backbones with the output norms of p1-p3
NORM0_SWIN_L = 2 * 192  # the 5-level model's extra output LayerNorm over p0 (192 channels)
# each preset: (its ResNet-50 counterpart, backbone count, Swin channels per level, ResNet channels per level,
# whether the neck adds a 3x3 stride-2 level on the raw last feature)
COUNTERPARTS = {
    "dino-4scale-swin-t": ("dino-4scale-r50", SWIN_T, [192, 384, 768], [512, 1024, 2048], True),
    "dino-4scale-swin-l": ("dino-4scale-r50", SWIN_L, [384, 768, 1536], [512, 1024, 2048], True),
    "dino-5scale-swin-l": ("dino-5scale-r50", SWIN_L + NORM0_SWIN_L, [192, 384, 768, 1536],
                           [256, 512, 1024, 2048], True),
    "stable-dino-4scale-swin-l": ("stable-dino-4scale-r50", SWIN_L, [384, 768, 1536], [512, 1024, 2048], True),
    "stable-dino-5scale-swin-l": ("stable-dino-5scale-r50", SWIN_L + NORM0_SWIN_L, [192, 384, 768, 1536],
                                  [256, 512, 1024, 2048], True),
    # Mask-DINO's pixel decoder projects C2-C5 by 1x1 convolutions and adds no level of its own
    "maskdino-swin-l": ("maskdino-r50", SWIN_L + NORM0_SWIN_L, [192, 384, 768, 1536], [256, 512, 1024, 2048], False),
}


def meta_model(name: str) -> nn.Module:
    cfg = presets.get(name)
    cfg.model.num_classes = 80
    with torch.device("meta"):
        return build_model(cfg.model)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_every_swin_preset_is_counted():
    assert {n for n in presets.names() if "swin" in n} == set(COUNTERPARTS)


@pytest.mark.parametrize("name", sorted(RELEASE))
def test_release_counts_exact_but_the_label_padding_row(name):
    model = meta_model(name)
    label_enc = model.queries.label_enc.weight
    assert tuple(label_enc.shape) == (80 + 1, 256)  # the one row the release does not have
    assert count(model) - label_enc.shape[1] == RELEASE[name]


@pytest.mark.parametrize("name", sorted(COUNTERPARTS))
def test_only_backbone_and_neck_inputs_differ_from_the_resnet_preset(name):
    r50_name, backbone, swin_ch, r50_ch, extra_level = COUNTERPARTS[name]
    swin, r50 = meta_model(name), meta_model(r50_name)
    assert count(swin.backbone) == backbone
    d = 256
    # 1x1 input projections (+ GroupNorm, unchanged) read the backbone's channels; the extra level's 3x3 conv
    # reads the last one
    neck_delta = sum((s - r) * d for s, r in zip(swin_ch, r50_ch))
    if extra_level:
        neck_delta += (swin_ch[-1] - r50_ch[-1]) * d * 9
    assert count(swin.neck) - count(r50.neck) == neck_delta
    others = {n: count(m) for n, m in swin.named_children() if n not in ("backbone", "neck")}
    assert others == {n: count(m) for n, m in r50.named_children() if n not in ("backbone", "neck")}


def test_swin_presets_keep_their_release_settings():
    t, l = presets.get("dino-4scale-swin-t").model.backbone, presets.get("dino-4scale-swin-l").model.backbone
    assert (t.kind, t.embed_dim, t.window_size, t.drop_path_rate, t.frozen_stages) == ("swin", 96, 7, 0.1, 0)
    assert (l.embed_dim, l.depths, l.num_heads, l.window_size, l.drop_path_rate) == (
        192, [2, 2, 18, 2], [6, 12, 24, 48], 12, 0.2)
    assert presets.get("dino-5scale-swin-l").model.backbone.return_levels == [2, 3, 4, 5]
    assert presets.get("maskdino-swin-l").model.backbone.drop_path_rate == 0.3
    # the recipe is the ResNet-50 preset's (detrex's dino_swin_*_12ep configs change only the backbone)
    assert presets.get("dino-4scale-swin-l").train == presets.get("dino-4scale-r50").train
