"""Memory fusion (Stable-DINO sec 3): dense / simple against a direct concat-Linear-LayerNorm, the u_like skip
rule, and that fusion plugs into every architecture."""

from __future__ import annotations

import pytest
import torch

import matchdetr
from matchdetr.models.encoders import Encoder
from matchdetr.models.plugins.memory_fusion import MemoryFusion, ULikeEncoder, add_memory_fusion

from conftest import MICRO


def test_dense_fusion_is_concat_linear_layernorm():
    det = matchdetr.build("dino-tiny", num_classes=3, **dict(o.split("=") for o in MICRO if o.startswith("model.")),
                          **{"model.memory_fusion": "dense"})
    fusion = det.fusion
    assert isinstance(fusion, MemoryFusion) and det.encoder.keep_layers
    seen = {}
    det.fusion.register_forward_hook(lambda m, inp, out: seen.update(inp=inp[0], out=out))
    det.eval()
    det(torch.randn(1, 3, 96, 128))
    layers = seen["inp"].layers
    assert len(layers) == len(det.encoder.layers) + 1
    torch.testing.assert_close(layers[0], seen["inp"].layers[0])
    cat = torch.cat(layers, -1)
    want = torch.nn.functional.layer_norm(cat @ fusion.fuse.proj.weight.T + fusion.fuse.proj.bias, (cat.shape[-1] // len(layers),),
                                          fusion.fuse.norm.weight, fusion.fuse.norm.bias)
    torch.testing.assert_close(seen["out"].tokens, want)


@pytest.mark.parametrize("kind,extra", [("simple", 2 * 32 * 32 + 32 + 64), ("dense", 3 * 32 * 32 + 32 + 64)])
def test_fusion_parameter_counts(kind, extra):
    micro = dict(o.split("=") for o in MICRO if o.startswith("model."))
    micro["model.transformer.enc_layers"] = "2"
    base = sum(p.numel() for p in matchdetr.build("deformable-detr-tiny", num_classes=3, **micro).parameters())
    fused = matchdetr.build("deformable-detr-tiny", num_classes=3, **micro, **{"model.memory_fusion": kind})
    assert sum(p.numel() for p in fused.parameters()) - base == extra


@pytest.mark.parametrize("n,skips", [(6, {4: 3, 5: 2, 6: 1}), (3, {3: 1}), (2, {2: 1}), (1, {})])
def test_u_like_mirror_skips(n, skips):
    enc = Encoder(torch.nn.Identity(), n)
    assert ULikeEncoder(enc, 8).skip_of == skips


@pytest.mark.parametrize("name", ["detr-tiny", "deformable-detr-tiny", "dab-deformable-detr-tiny", "dino-tiny",
                                  "h-deformable-detr-tiny"])
@pytest.mark.parametrize("kind", ["simple", "u_like", "dense"])
def test_fusion_plugs_into_every_architecture(name, kind):
    micro = dict(o.split("=") for o in MICRO if o.startswith("model."))
    det = matchdetr.build(name, num_classes=3, **micro, **{"model.memory_fusion": kind})
    det.eval()
    out = det(torch.randn(1, 3, 96, 128))
    assert torch.isfinite(out.logits).all()
    if kind == "u_like":
        assert isinstance(det.encoder, ULikeEncoder)
        assert all(k.startswith(("layers.", "skips.", "final.")) for k, _ in det.encoder.named_parameters())


def test_unknown_fusion_is_one_line():
    with pytest.raises(ValueError, match="unknown memory fusion 'sparse'; .*valid: dense, simple, u_like, none"):
        matchdetr.build("detr-tiny", num_classes=2, memory_fusion="sparse")
    with pytest.raises(ValueError, match="unknown memory fusion 'sparse'"):
        add_memory_fusion(matchdetr.build("detr-tiny", num_classes=2).module, "sparse", 8)
