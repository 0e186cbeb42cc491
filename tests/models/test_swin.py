"""Swin backbone: equal to HF transformers' ``SwinBackbone`` with the same weights (HF's shifted-window detection
path, which equals detectron2's Swin), the release's shift mask and bias index transcribed, sizes, masks, frozen
stages, stochastic depth and activation checkpointing, and the released sizes' parameter counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from matchdetr.models.swin import SIZES, SwinBackbone, relative_position_index, shift_mask

TINY = dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4))


def tiny(window: int = 7, **kw) -> SwinBackbone:
    """A tiny Swin with random weights everywhere (LayerNorms and biases too), so no parameter goes untested."""
    torch.manual_seed(0)
    model = SwinBackbone(**{**TINY, "window_size": window, **kw})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def to_hf(ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our Swin state dict in HF transformers' ``SwinBackbone`` names (5.x): q/k/v split from ``qkv``, output
    norms ``norm{s}`` -> ``hidden_states_norms.stage{s+1}``."""
    block = {"norm1": "layernorm_before", "norm2": "layernorm_after", "attn.proj": "attention.o_proj",
             "attn.relative_position_bias_table": "attention.relative_position_bias.relative_position_bias_table",
             "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
    out = {}
    for key, value in ours.items():
        if key.startswith("patch_embed."):
            out[key.replace("patch_embed.proj", "swin.embeddings.patch_embeddings.projection")
                   .replace("patch_embed.norm", "swin.embeddings.norm")] = value
        elif key.startswith("norm"):
            stage, param = key[4:].split(".")
            out[f"hidden_states_norms.stage{int(stage) + 1}.{param}"] = value
        elif ".attn.qkv." in key:
            for name, part in zip("qkv", value.chunk(3)):
                out["swin.encoder." + key.replace("attn.qkv", f"attention.{name}_proj")] = part
        elif ".downsample." in key:
            out["swin.encoder." + key] = value
        else:
            prefix, rest = key.split(".blocks.")
            b, name = rest.split(".", 1)
            module, param = name.rsplit(".", 1) if name.endswith((".weight", ".bias")) else (name, None)
            out[f"swin.encoder.{prefix}.blocks.{b}.{block[module]}" + (f".{param}" if param else "")] = value
    return out


def hf_twin(ours: SwinBackbone, window: int):
    transformers = pytest.importorskip("transformers")
    levels = ours.return_levels
    config = transformers.SwinConfig(embed_dim=TINY["embed_dim"], depths=list(TINY["depths"]),
                                     num_heads=list(TINY["num_heads"]), window_size=window, drop_path_rate=0.0,
                                     out_features=[f"stage{lvl - 1}" for lvl in levels])
    hf = transformers.SwinBackbone(config).eval()
    result = hf.load_state_dict(to_hf(ours.state_dict()), strict=False)
    assert not result.unexpected_keys and set(result.missing_keys) == {"swin.layernorm.weight", "swin.layernorm.bias"}
    return hf


# (window, image size): the map equals the window at the last stage (224: 7x7, where HF's SwinModel would switch
# the shift off), sizes not divisible by 32, and last stages smaller than the window (160x224: 5x7; window 12 at
# 301x457: 10x15).
@pytest.mark.parametrize("window,size", [(7, (224, 224)), (7, (203, 317)), (7, (160, 224)), (12, (301, 457))])
def test_equals_hf_swin_backbone(window: int, size: tuple[int, int]) -> None:
    ours = tiny(window, return_levels=(2, 3, 4, 5)).eval()
    hf = hf_twin(ours, window)
    images = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(2, *size, dtype=torch.bool)
    with torch.no_grad():
        out = ours(images, mask)
        ref = hf(images).feature_maps
    assert len(out) == len(ref) == 4
    for (feat, _), expected in zip(out, ref):
        torch.testing.assert_close(feat, expected, rtol=0, atol=1e-4)


def test_feature_sizes_round_up_and_masks_follow_them() -> None:
    model = tiny().eval()
    images = torch.randn(1, 3, 301, 457)
    mask = torch.zeros(1, 301, 457, dtype=torch.bool)
    mask[:, :, 300:] = True  # the right 157 columns are padding
    with torch.no_grad():
        out = model(images, mask)
    assert model.channels == [32, 64, 128] and model.strides == [8, 16, 32]
    assert [tuple(f.shape[-2:]) for f, _ in out] == [(38, 58), (19, 29), (10, 15)]
    assert [tuple(m.shape) for _, m in out] == [(1, 38, 58), (1, 19, 29), (1, 10, 15)]
    assert out[0][1][0, :, 39:].all() and not out[0][1][0, :, :38].any()
    # a DINO neck's 4th level: a 3x3 stride-2 conv on the last map
    assert nn.Conv2d(128, 8, 3, stride=2, padding=1)(out[-1][0]).shape[-2:] == (5, 8)


def test_shift_mask_is_the_release_slice_loop() -> None:
    def release(hp: int, wp: int, window: int, shift: int) -> torch.Tensor:  # detectron2 BasicLayer.forward
        img = torch.zeros(1, hp, wp, 1)
        cnt = 0
        for h in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            for w in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
                img[:, h, w, :] = cnt
                cnt += 1
        win = img.view(1, hp // window, window, wp // window, window, 1).permute(0, 1, 3, 2, 4, 5)
        win = win.reshape(-1, window * window)
        diff = win.unsqueeze(1) - win.unsqueeze(2)
        return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)

    for hp, wp, window in [(14, 21, 7), (7, 7, 7), (12, 24, 12), (6, 4, 2)]:
        ours = shift_mask(hp, wp, window, window // 2, torch.zeros(()))
        torch.testing.assert_close(ours, release(hp, wp, window, window // 2), rtol=0, atol=0)


def test_relative_position_index_is_the_release_formula() -> None:
    # window 2: tokens (0,0) (0,1) (1,0) (1,1); index = (dy + 1) * 3 + (dx + 1)
    expected = torch.tensor([[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]])
    assert torch.equal(relative_position_index(2), expected)
    idx = relative_position_index(7)
    assert idx.shape == (49, 49) and int(idx.max()) == 168 and int(idx[0, 0]) == 84
    assert "layers.0.blocks.0.attn.relative_position_index" not in tiny().state_dict()  # non-persistent


def test_frozen_stages_match_the_release_numbering() -> None:
    def frozen(k: int) -> set[str]:
        model = SwinBackbone(**TINY, frozen_stages=k)
        return {n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("layers") else "")
                for n, p in model.named_parameters() if not p.requires_grad}

    assert frozen(0) == set()
    assert frozen(1) == {"patch_embed"}
    assert frozen(3) == {"patch_embed", "layers.0", "layers.1"}
    assert frozen(5) == {"patch_embed", "layers.0", "layers.1", "layers.2", "layers.3"}  # norm1..3 stay trainable
    with pytest.raises(ValueError, match="frozen_stages"):
        SwinBackbone(**TINY, frozen_stages=6)


def test_stages_past_the_deepest_level_are_not_built() -> None:
    model = SwinBackbone(**TINY, return_levels=(2, 3))
    assert len(model.layers) == 2 and model.layers[1].downsample is None
    assert {n.split(".")[0] for n, _ in model.named_parameters()} == {"patch_embed", "layers", "norm0", "norm1"}


def test_drop_path_rates_are_linear_and_identity_in_eval() -> None:
    model = tiny(drop_path_rate=0.4)
    rates = [b.drop_path_rate for stage in model.layers for b in stage.blocks]
    assert rates == pytest.approx(torch.linspace(0, 0.4, 8).tolist())
    plain = SwinBackbone(**TINY)
    plain.load_state_dict(model.state_dict())
    images, mask = torch.randn(2, 3, 64, 96), torch.zeros(2, 64, 96, dtype=torch.bool)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(images, mask)[-1][0], plain.eval()(images, mask)[-1][0], rtol=0, atol=0)
        assert not torch.allclose(model.train()(images, mask)[-1][0], plain(images, mask)[-1][0])


def test_activation_checkpointing_gives_the_same_gradients() -> None:
    images, mask = torch.randn(2, 3, 64, 96), torch.zeros(2, 64, 96, dtype=torch.bool)
    grads = []
    for levels in ((), (2, 3, 4, 5)):
        model = tiny(drop_path_rate=0.3, checkpoint_levels=levels).train()
        torch.manual_seed(3)  # the same drop-path draws (checkpointing replays the RNG state)
        sum(f.square().mean() for f, _ in model(images, mask)).backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, rtol=1e-5, atol=1e-7, msg=name)


def test_released_sizes_parameter_counts_on_meta() -> None:
    # Parameters only (the bias-index buffers are not parameters), all four stages, the patch embedding with its
    # norm and the output norms of out_indices (1, 2, 3) (norm1..norm3), no final norm and no ImageNet head:
    # Swin-T = 28,288,354 (Microsoft's classifier) - 769,000 (head) - 1,536 (final norm) + 2,688 (norm1..3).
    expected = {"swin-t": 27_520_506, "swin-b-384": 86_880_120, "swin-l-384": 195_200_820}
    for name, count in expected.items():
        s = SIZES[name]
        with torch.device("meta"):
            model = SwinBackbone(embed_dim=s.embed_dim, depths=s.depths, num_heads=s.num_heads,
                                 window_size=s.window_size, drop_path_rate=s.drop_path_rate)
        assert sum(p.numel() for p in model.parameters()) == count, name
        assert model.channels == [2 * s.embed_dim, 4 * s.embed_dim, 8 * s.embed_dim]


def test_bad_arguments_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="return_levels"):
        SwinBackbone(**TINY, return_levels=(1, 3))
    with pytest.raises(ValueError, match="divisible by num_heads"):
        SwinBackbone(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(3, 2, 2, 4))
    with pytest.raises(ValueError, match="4 depths"):
        SwinBackbone(embed_dim=16, depths=(2, 2, 2), num_heads=(1, 2, 2))


@pytest.mark.slow
def test_onnx_export_follows_the_input_size() -> None:
    """Traced once at 224x224, the graph pads, shifts and masks for other sizes and batch sizes (no size frozen)."""
    import io

    ort = pytest.importorskip("onnxruntime")
    model = tiny().eval()

    class Flat(nn.Module):  # the exporter takes tensors, not (map, mask) pairs
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, images: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(t for level in self.model(images, mask) for t in level)

    buf = io.BytesIO()
    sample = (torch.randn(2, 3, 224, 224), torch.zeros(2, 224, 224, dtype=torch.bool))
    torch.onnx.export(Flat().eval(), sample, buf, dynamo=False, opset_version=17, input_names=["images", "mask"],
                      dynamic_axes={"images": {0: "b", 2: "h", 3: "w"}, "mask": {0: "b", 1: "h", 2: "w"}})
    session = ort.InferenceSession(buf.getvalue())
    flat = Flat().eval()
    for b, h, w in [(1, 203, 317), (3, 160, 224)]:
        images, mask = torch.randn(b, 3, h, w), torch.zeros(b, h, w, dtype=torch.bool)
        mask[-1, :, w // 2:] = True
        got = session.run(None, {"images": images.numpy(), "mask": mask.numpy()})
        with torch.no_grad():
            expected = flat(images, mask)
        for g, e in zip(got, expected):
            torch.testing.assert_close(torch.from_numpy(g), e, rtol=0, atol=1e-4)
