"""ResNet backbone: torchvision names and counts, weight loading, shapes, masks, freezing, FrozenBatchNorm."""

from __future__ import annotations

import argparse

import pytest
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from matchdetr.models.backbone import ResNetConfig
from matchdetr.interop.torchvision_resnet import load_torchvision_resnet
from matchdetr.compose import build_backbone
from matchdetr.models.backbone import Backbone, FrozenBatchNorm2d

# torchvision's published parameter totals (incl. fc), from its model docs / weight metadata.
TV_PARAMS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032, "resnet101": 44_549_160}
DEPTHS = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3], "resnet50": [3, 4, 6, 3], "resnet101": [3, 4, 23, 3]}
BN_PARAMS = ("weight", "bias")
BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


def torchvision_shapes(name: str, width: int = 64) -> dict[str, tuple[int, ...]]:
    """torchvision ResNet state-dict keys and shapes, written out from the architecture (not from our module)."""
    bottleneck = name in ("resnet50", "resnet101")
    exp = 4 if bottleneck else 1
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, c: int) -> None:
        for s in BN_PARAMS + BN_STATS:
            shapes[f"{prefix}.{s}"] = () if s == "num_batches_tracked" else (c,)

    shapes["conv1.weight"] = (width, 3, 7, 7)
    bn("bn1", width)
    cin = width
    for i, n in enumerate(DEPTHS[name]):
        planes = width * 2**i
        for b in range(n):
            p = f"layer{i + 1}.{b}"
            if bottleneck:
                convs = [(planes, cin, 1, 1), (planes, planes, 3, 3), (planes * exp, planes, 1, 1)]
            else:
                convs = [(planes, cin, 3, 3), (planes, planes, 3, 3)]
            for c, shape in enumerate(convs, start=1):
                shapes[f"{p}.conv{c}.weight"] = shape
                bn(f"{p}.bn{c}", shape[0])
            if b == 0 and (i > 0 or bottleneck):  # stride 2 or channel change
                shapes[f"{p}.downsample.0.weight"] = (planes * exp, cin, 1, 1)
                bn(f"{p}.downsample.1", planes * exp)
            cin = planes * exp
    shapes["fc.weight"] = (1000, cin)
    shapes["fc.bias"] = (1000,)
    return shapes


def torchvision_state_dict(name: str, width: int = 64, seed: int = 0) -> dict[str, Tensor]:
    """A synthetic torchvision-format file content: random values, torchvision names and shapes."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in torchvision_shapes(name, width).items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(12345, dtype=torch.long)
        elif k.endswith("running_var"):
            out[k] = torch.rand(shape, generator=g) + 0.5
        else:
            out[k] = torch.randn(shape, generator=g)
    return out


def _is_ours(key: str) -> bool:
    return not key.startswith("fc.") and not key.endswith("num_batches_tracked")


# ----------------------------------------------------------------------------------------- names and counts
@pytest.mark.parametrize("name", list(TV_PARAMS))
def test_parameter_count_matches_torchvision(name: str) -> None:
    tv = torchvision_shapes(name)
    fc = sum(torch.Size(tv[k]).numel() for k in ("fc.weight", "fc.bias"))
    # Our independent architecture transcription reproduces torchvision's published total ...
    tv_params = sum(torch.Size(s).numel() for k, s in tv.items() if not k.endswith(BN_STATS))
    assert tv_params == TV_PARAMS[name]
    # ... and the module holds the same learnable tensors minus fc: convs as parameters, BN affine as buffers.
    model = Backbone(name, frozen_stages=0)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(list(model.parameters())) == len(convs)  # the only parameters are conv weights (no bias)
    conv = sum(p.numel() for p in model.parameters())
    bn_affine = sum(m.weight.numel() + m.bias.numel() for m in bns)
    assert conv + bn_affine == TV_PARAMS[name] - fc


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_state_dict_keys_and_shapes_equal_torchvision(name: str) -> None:
    model = Backbone(name, return_levels=(2, 3, 4, 5))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = {f"body.{k}": s for k, s in torchvision_shapes(name).items() if _is_ours(k)}
    assert ours == expected


def test_unbuilt_stages_are_absent() -> None:
    model = Backbone("resnet18", return_levels=(3,))
    assert not hasattr(model.body, "layer3") and not hasattr(model.body, "layer4")
    assert {k.split(".")[1] for k in model.state_dict() if k.startswith("body.layer")} == {"layer1", "layer2"}


# ------------------------------------------------------------------------------------------------- loading
@pytest.mark.parametrize(("name", "fmt"), [("resnet18", "pth"), ("resnet18", "safetensors"), ("resnet50", "pth")])
def test_load_torchvision_file_sets_every_tensor(tmp_path, name: str, fmt: str) -> None:
    tv = torchvision_state_dict(name)
    path = tmp_path / f"{name}.{fmt}"
    torch.save(tv, path) if fmt == "pth" else save_file(tv, str(path))
    model = Backbone(name, frozen_stages=2, return_levels=(2, 3, 4, 5))
    load_torchvision_resnet(model, path)
    sd = model.state_dict()
    for k, v in tv.items():
        if _is_ours(k):
            assert torch.equal(sd[f"body.{k}"], v), k
    assert model.body.layer3[1].conv2.weight[0, 0, 1, 1].item() == tv["layer3.1.conv2.weight"][0, 0, 1, 1].item()
    assert not model.body.layer1[0].conv1.weight.requires_grad  # copy in place keeps freezing
    assert model.body.layer2[0].conv1.weight.requires_grad


@pytest.mark.parametrize("with_counters", [True, False])
def test_load_into_trainable_bn_backbone(tmp_path, with_counters: bool) -> None:
    """A trainable-BatchNorm backbone (norm "bn", training from scratch or fine-tuning) has step counters that a
    frozen one lacks; a file with or without them loads, and every weight and statistic is copied."""
    tv = torchvision_state_dict("resnet18", width=16, seed=5)
    if not with_counters:
        tv = {k: v for k, v in tv.items() if not k.endswith("num_batches_tracked")}
    save_file(tv, str(tmp_path / "r18w16.safetensors"))
    model = Backbone("resnet18", width=16, frozen_stages=0, return_levels=(4, 5), norm="bn")
    load_torchvision_resnet(model, tmp_path / "r18w16.safetensors")
    sd = model.state_dict()
    for k, v in tv.items():
        if _is_ours(k):
            assert torch.equal(sd[f"body.{k}"], v), k
    assert isinstance(model.body.layer4[1].bn2, torch.nn.BatchNorm2d)


def test_load_into_partial_body_ignores_unbuilt_stages(tmp_path) -> None:
    tv = torchvision_state_dict("resnet18")
    torch.save(tv, tmp_path / "r18.pth")
    model = Backbone("resnet18", return_levels=(2, 3))
    load_torchvision_resnet(model.body, tmp_path / "r18.pth")  # the body alone is accepted too
    assert torch.equal(model.body.layer2[1].bn2.running_var, tv["layer2.1.bn2.running_var"])


def test_build_backbone_loads_weights(tmp_path) -> None:
    tv = torchvision_state_dict("resnet18", seed=3)
    torch.save(tv, tmp_path / "r18.pth")
    cfg = ResNetConfig(depth=18, frozen_stages=1, return_levels=[4, 5], weights=str(tmp_path / "r18.pth"))
    model = build_backbone(cfg)
    assert torch.equal(model.body.conv1.weight, tv["conv1.weight"])
    assert model.channels == [256, 512] and model.strides == [16, 32]


def _error(fn, exc: type[Exception] = ValueError) -> str:
    with pytest.raises(exc) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_load_errors_key_mismatch(tmp_path) -> None:
    path = tmp_path / "r50.pth"
    torch.save(torchvision_state_dict("resnet50"), path)
    msg = _error(lambda: load_torchvision_resnet(Backbone("resnet34"), path))  # same depths, other blocks
    assert str(path) in msg and "unexpected [" in msg and "layer1.0.conv3.weight" in msg and "more]" in msg
    tv = torchvision_state_dict("resnet18")
    del tv["layer2.1.conv2.weight"]
    torch.save(tv, path)
    msg = _error(lambda: load_torchvision_resnet(Backbone("resnet18"), path))
    assert "missing [layer2.1.conv2.weight]" in msg and "unexpected []" in msg


def test_load_errors_shape_mismatch(tmp_path) -> None:
    path = tmp_path / "r18.safetensors"
    save_file(torchvision_state_dict("resnet18"), str(path))
    msg = _error(lambda: load_torchvision_resnet(Backbone("resnet18", width=32), path))
    assert str(path) in msg and "'conv1.weight'" in msg and "(64, 3, 7, 7)" in msg and "(32, 3, 7, 7)" in msg


def test_load_errors_bad_files(tmp_path) -> None:
    model = Backbone("resnet18")
    missing = tmp_path / "nope.pth"
    assert str(missing) in _error(lambda: load_torchvision_resnet(model, missing), FileNotFoundError)
    for content in ([1, 2, 3], {"model": {"conv1.weight": torch.zeros(1)}}):
        torch.save(content, tmp_path / "x.pth")
        msg = _error(lambda: load_torchvision_resnet(model, tmp_path / "x.pth"))
        assert "x.pth" in msg and "flat state dict" in msg
    # A DETR-style checkpoint with an argparse Namespace: refused by weights_only, reported in one line.
    torch.save({"args": argparse.Namespace(lr=1e-4)}, tmp_path / "ckpt.pth")
    msg = _error(lambda: load_torchvision_resnet(model, tmp_path / "ckpt.pth"))
    assert "ckpt.pth" in msg and "weights_only" in msg and "argparse.Namespace" in msg
    for bad in ("junk.pth", "junk.safetensors"):
        (tmp_path / bad).write_bytes(b"\x00\x01 definitely not weights" * 10)
        assert bad in _error(lambda: load_torchvision_resnet(model, tmp_path / bad))


# ------------------------------------------------------------------------------------------------- forward
@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.parametrize("dilation", [False, True])
def test_output_shapes_and_strides(name: str, dilation: bool) -> None:
    width, exp = 16, (4 if name == "resnet50" else 1)
    model = Backbone(name, width=width, dilation=dilation, return_levels=(5, 2, 3, 4))
    strides = [4, 8, 16, 16 if dilation else 32]
    channels = [width * exp * 2**i for i in range(4)]
    assert model.strides == strides and model.channels == channels
    images, mask = torch.randn(2, 3, 64, 64), torch.zeros(2, 64, 64, dtype=torch.bool)
    out = model(images, mask)
    assert [tuple(f.shape) for f, _ in out] == [(2, c, 64 // s, 64 // s) for c, s in zip(channels, strides)]
    assert [tuple(m.shape) for _, m in out] == [(2, 64 // s, 64 // s) for s in strides]
    if dilation:  # torchvision DC5: first block of layer4 keeps dilation 1, the rest use 2, no stride
        for b, block in enumerate(model.body.layer4):
            convs = [m for m in block.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
            assert all(c.dilation == ((1, 1) if b == 0 else (2, 2)) for c in convs)
        assert all(c.stride == (1, 1) for c in model.body.layer4.modules() if isinstance(c, nn.Conv2d))


def test_mask_downsampling_nearest() -> None:
    model = Backbone("resnet18", width=8, return_levels=(2, 3, 4, 5))
    mask = torch.zeros(2, 64, 96, dtype=torch.bool)
    mask[0, :, 40:] = True  # image 0 is 40 px wide, image 1 is 48 px high
    mask[1, 48:, :] = True
    for (feat, m), s in zip(model(torch.randn(2, 3, 64, 96), mask), model.strides):
        assert m.dtype == torch.bool and m.shape == feat.shape[:1] + feat.shape[2:]
        assert torch.equal(m, mask[:, ::s, ::s])  # nearest at an integer ratio picks pixel (i*s, j*s)


@pytest.mark.parametrize("frozen", range(6))
def test_frozen_stages(frozen: int) -> None:
    model = Backbone("resnet18", width=8, frozen_stages=frozen, return_levels=(2, 3, 4, 5))
    prefixes = ["body.conv1", "body.layer1", "body.layer2", "body.layer3", "body.layer4"][:frozen]
    for n, p in model.named_parameters():
        in_frozen_stage = any(n.startswith(prefix + ".") for prefix in prefixes)
        assert p.requires_grad == (not in_frozen_stage), n
    assert sum(not p.requires_grad for p in model.parameters()) == sum(
        len(list(model.get_submodule(prefix).parameters())) for prefix in prefixes)
    out = model(torch.randn(1, 3, 32, 32), torch.zeros(1, 32, 32, dtype=torch.bool))
    if frozen < 5:
        sum(f.sum() for f, _ in out).backward()
        for n, p in model.named_parameters():
            assert (p.grad is None) == (not p.requires_grad), n


def test_bad_arguments() -> None:
    assert "resnet152" in _error(lambda: Backbone("resnet152"))
    assert "return_levels" in _error(lambda: Backbone("resnet18", return_levels=(1, 5)))
    assert "frozen_stages" in _error(lambda: Backbone("resnet18", frozen_stages=6))


# --------------------------------------------------------------------------------------- FrozenBatchNorm2d
def test_frozen_batchnorm_equals_batchnorm_eval() -> None:
    bn = nn.BatchNorm2d(6).eval()
    with torch.no_grad():
        bn.weight.normal_(), bn.bias.normal_(), bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2)
    frozen = FrozenBatchNorm2d(6)
    frozen.load_state_dict(bn.state_dict())  # strict: num_batches_tracked is accepted and ignored
    assert "num_batches_tracked" not in frozen.state_dict()
    assert list(frozen.parameters()) == []
    x = torch.randn(3, 6, 5, 7)
    torch.testing.assert_close(frozen(x), bn(x), rtol=1e-5, atol=1e-6)
    frozen.train()  # train mode does not update anything
    frozen(x)
    assert torch.equal(frozen.running_mean, bn.running_mean)


def test_float64() -> None:
    model = Backbone("resnet18", width=8, return_levels=(3, 5)).to(torch.float64)
    assert all(b.dtype == torch.float64 for b in model.buffers())
    out = model(torch.randn(1, 3, 32, 32, dtype=torch.float64), torch.zeros(1, 32, 32, dtype=torch.bool))
    assert all(f.dtype == torch.float64 and m.dtype == torch.bool for f, m in out)
