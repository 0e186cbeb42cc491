"""Swin weights: Microsoft's ImageNet layout loads with strict keys (ignored keys in one line, anything else an
error naming the keys), the detrex (``backbone.``) and IDEA-Research/DINO (``backbone.0.``) layouts map onto ours,
and the architecture is read off the weights. The official state dicts are built here with the official names
and shapes (microsoft/Swin-Transformer ``models/swin_transformer.py``, detectron2 ``modeling/backbone/swin.py``):
a tiny Swin's tensors, renamed, with the extra keys the releases store."""

from __future__ import annotations

import pathlib

import pytest
import torch
from safetensors.torch import save_file

from matchdetr.interop.hf_deformable_detr import ConversionError
from matchdetr.interop.swin_weights import (PREFIXES, drop_index_buffers, load_swin_imagenet, rename_swin,
                                            swin_arch_from_state, swin_prefix)
from matchdetr.models.swin import SIZES, SwinBackbone, relative_position_index

TINY = dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=7)


def tiny(seed: int, **kw) -> SwinBackbone:
    torch.manual_seed(seed)
    model = SwinBackbone(**{**TINY, **kw})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def with_index(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Add the ``attn.relative_position_index`` buffer every release stores beside each bias table."""
    out = dict(state)
    for key, table in state.items():
        if key.endswith("relative_position_bias_table"):
            window = (int(table.shape[0] ** 0.5) + 1) // 2
            out[key.replace("bias_table", "index")] = relative_position_index(window)
    return out


def microsoft(model: SwinBackbone, resolution: int = 224, classes: int = 10) -> dict[str, torch.Tensor]:
    """A Microsoft ImageNet state dict with ``model``'s weights: no output norms; the classifier's final norm and
    head; the index buffers; ``attn_mask`` [nW, N, N] in the shifted blocks of stages larger than the window (the
    classifier switches the shift off where the map is no larger than it: the last stage at 224 / window 7)."""
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("norm")}
    window, dim = TINY["window_size"], TINY["embed_dim"] * 8
    for s in range(4):
        side = resolution // 4 // 2**s
        if side > window:
            state[f"layers.{s}.blocks.1.attn_mask"] = torch.zeros((side // window) ** 2, window**2, window**2)
    state.update({"norm.weight": torch.ones(dim), "norm.bias": torch.zeros(dim),
                  "head.weight": torch.randn(classes, dim), "head.bias": torch.zeros(classes)})
    return with_index(state)


def test_imagenet_file_loads_strictly_and_says_what_it_ignored(tmp_path) -> None:
    source, target = tiny(0), tiny(1, frozen_stages=2)
    path = tmp_path / "swin_tiny_patch4_window7_224.pth"
    torch.save({"model": microsoft(source)}, path)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    line = load_swin_imagenet(target, path)
    assert "\n" not in line
    ignored = line.split("; ignored ")[1].split(";")[0].split(", ")
    assert sorted(ignored) == ["3 x layers.*.blocks.*.attn_mask", "head.bias", "head.weight", "norm.bias", "norm.weight"]
    assert "output norms norm1, norm2, norm3 kept at initialisation" in line
    for key, value in target.state_dict().items():
        expected = before[key] if key.startswith("norm") else source.state_dict()[key]
        assert torch.equal(value, expected), key
    assert not target.patch_embed.proj.weight.requires_grad and target.layers[1].blocks[0].attn.qkv.weight.requires_grad


def test_flat_safetensors_file_and_unbuilt_stages(tmp_path) -> None:
    path = tmp_path / "swin.safetensors"
    save_file(microsoft(tiny(0)), str(path))
    short = tiny(1, return_levels=(2, 3))  # stages 0-1 only, no PatchMerging after stage 1
    line = load_swin_imagenet(short, path)
    assert "; stages not built: layers.1.downsample.*, layers.2.*, layers.3.*;" in line
    assert torch.equal(short.layers[1].blocks[1].mlp.fc2.weight, tiny(0).layers[1].blocks[1].mlp.fc2.weight)


def test_imagenet_key_errors_name_the_keys(tmp_path) -> None:
    good = microsoft(tiny(0))
    cases = [
        ({**good, "absolute_pos_embed": torch.zeros(1, 3136, 16)}, r"unexpected \[absolute_pos_embed\]"),
        ({k: v for k, v in good.items() if k != "layers.0.blocks.1.mlp.fc2.bias"},
         r"missing \[layers\.0\.blocks\.1\.mlp\.fc2\.bias\]"),
        ({**good, "layers.0.blocks.0.attn.relative_position_index": relative_position_index(7).t().contiguous()},
         "is not the relative position index of a 7x7 window"),
        ({**good, "layers.0.blocks.0.attn.relative_position_index": relative_position_index(12)},
         "is for window 12 but the bias table beside it has 169 rows"),
    ]
    for i, (state, message) in enumerate(cases):
        path = tmp_path / f"bad{i}.pth"
        torch.save({"model": state}, path)
        with pytest.raises(ValueError, match=message) as err:
            load_swin_imagenet(tiny(1), path)
        assert "\n" not in str(err.value) and str(path) in str(err.value)
    # a window-12 file into a window-7 backbone: the bias tables differ in shape
    path = tmp_path / "w12.pth"
    torch.save({"model": microsoft(tiny(0, window_size=12))}, path)
    with pytest.raises(ValueError, match=r"shape mismatch for 'layers\.0\.blocks\.0\.attn\.relative_position_bias_table': "
                                         r"file has \(529, 1\), backbone expects \(169, 1\)"):
        load_swin_imagenet(tiny(1), path)


def test_a_pickle_with_code_is_refused(tmp_path) -> None:
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    path = tmp_path / "swin.pth"
    torch.save({"model": {"patch_embed.proj.weight": torch.zeros(1)}, "config": Payload()}, path)
    with pytest.raises(ValueError, match=r"refused by torch.load\(weights_only=True\)"):
        load_swin_imagenet(tiny(1), path)
    assert not marker.exists()


@pytest.mark.parametrize("layout", list(PREFIXES))
def test_detector_layouts_map_onto_ours(layout: str) -> None:
    prefix = PREFIXES[layout]
    ours = {"backbone." + k: v for k, v in tiny(0).state_dict().items()}
    release = with_index({prefix + k[len("backbone."):]: v for k, v in ours.items()})
    release["transformer.level_embeds"] = torch.zeros(4, 8)  # not the backbone's
    assert swin_prefix(release) == prefix
    mapped = {}
    for key, value in drop_index_buffers(release, "ckpt.pth").items():
        for k, v in rename_swin(key, value, prefix):
            mapped[k] = v
    assert mapped.keys() == ours.keys() and all(torch.equal(mapped[k], ours[k]) for k in ours)
    assert rename_swin("transformer.level_embeds", torch.zeros(1), prefix) == []
    assert swin_prefix({"backbone.res4.0.conv1.weight": torch.zeros(1)}) is None


# Names and shapes of the released DINO-4scale Swin-L-384 backbone (detrex: detectron2's SwinTransformer with
# embed 192, depths 2/2/18/2, heads 6/12/24/48, window 12, out_indices (1, 2, 3)), read off detectron2's code.
DETREX_SWIN_L_384 = {
    "backbone.patch_embed.proj.weight": (192, 3, 4, 4),
    "backbone.patch_embed.norm.bias": (192,),
    "backbone.layers.0.blocks.0.norm1.weight": (192,),
    "backbone.layers.0.blocks.0.attn.qkv.weight": (576, 192),
    "backbone.layers.0.blocks.0.attn.relative_position_bias_table": (529, 6),
    "backbone.layers.0.blocks.1.attn.relative_position_index": (144, 144),
    "backbone.layers.0.blocks.1.mlp.fc1.weight": (768, 192),
    "backbone.layers.0.downsample.reduction.weight": (384, 768),
    "backbone.layers.0.downsample.norm.weight": (768,),
    "backbone.layers.2.blocks.17.attn.relative_position_bias_table": (529, 24),
    "backbone.layers.2.downsample.reduction.weight": (1536, 3072),
    "backbone.layers.3.blocks.1.attn.proj.weight": (1536, 1536),
    "backbone.layers.3.blocks.1.mlp.fc2.weight": (1536, 6144),
    "backbone.norm1.weight": (384,),
    "backbone.norm3.bias": (1536,),
}


def _meta_release(name: str, levels: tuple[int, ...], prefix: str) -> dict[str, torch.Tensor]:
    s = SIZES[name]
    with torch.device("meta"):
        model = SwinBackbone(embed_dim=s.embed_dim, depths=s.depths, num_heads=s.num_heads,
                             window_size=s.window_size, return_levels=levels)
    return with_index({prefix + k: v for k, v in model.state_dict().items()})


def test_swin_l_release_keys_and_shapes() -> None:
    release = _meta_release("swin-l-384", (3, 4, 5), "backbone.")
    assert len(release) == 355  # 331 tensors of ours + 24 index buffers
    for key, shape in DETREX_SWIN_L_384.items():
        assert tuple(release[key].shape) == shape, key


# every released size, 4-scale (norm1..3) and 5-scale (norm0..3), in both detector layouts
@pytest.mark.parametrize("name,levels,prefix", [
    ("swin-t", (3, 4, 5), "backbone."), ("swin-s", (2, 3, 4, 5), "backbone.0."), ("swin-b-384", (3, 4, 5), "backbone.0."),
    ("swin-l-224", (3, 4, 5), "backbone."), ("swin-l-384", (2, 3, 4, 5), "backbone.")])
def test_architecture_is_read_off_the_weights(name: str, levels: tuple[int, ...], prefix: str) -> None:
    release = _meta_release(name, levels, prefix)
    arch = swin_arch_from_state(release, prefix)
    assert arch.size == name and arch.out_levels == levels
    assert arch.window_size == SIZES[name].window_size and arch.mlp_ratio == 4.0
    kw = arch.backbone_kwargs()
    assert kw["drop_path_rate"] == SIZES[name].drop_path_rate and kw["return_levels"] == levels
    with torch.device("meta"):
        rebuilt = SwinBackbone(**kw).state_dict()
    assert {k: v.shape for k, v in rebuilt.items()} == {
        k[len(prefix):]: v.shape for k, v in release.items() if not k.endswith("relative_position_index")}


def test_an_imagenet_file_has_no_output_norms() -> None:
    imagenet = swin_arch_from_state(microsoft(tiny(0)))
    assert imagenet.out_levels == () and imagenet.size is None and imagenet.window_size == 7
    assert imagenet.backbone_kwargs()["return_levels"] == (3, 4, 5)


def test_architecture_errors() -> None:
    with pytest.raises(ConversionError, match=r"ckpt: no backbone\.patch_embed\.proj\.weight: not a Swin"):
        swin_arch_from_state({"backbone.res4.0.conv1.weight": torch.zeros(1)}, "backbone.", "ckpt")
    three = {k: v for k, v in tiny(0).state_dict().items() if not k.startswith("layers.3.")}
    with pytest.raises(ConversionError, match=r"3 Swin stages with \[2, 2, 2\] blocks"):
        swin_arch_from_state(three)
