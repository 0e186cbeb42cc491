"""matchdetr reproduces HF transformers' DeformableDetrForObjectDetection after `matchdetr convert hf`.

Small random HF configs (HF's own ResNet, use_timm_backbone=False) for the plain, box-refinement and two-stage
configurations; every weight is perturbed so no attention is trivially uniform. Logits must agree within 1e-4
and boxes within 1e-5 (max abs, float32), as the Deformable-DETR issue requires.
"""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

import matchdetr
from matchdetr.cli import main
from matchdetr.interop.hf_deformable_detr import ConversionError, convert_hf_deformable_detr


def hf_model(refine: bool, two_stage: bool, seed: int = 0, width: int = 8, **overrides):
    from transformers import DeformableDetrConfig, DeformableDetrForObjectDetection

    torch.manual_seed(seed)
    backbone = {"model_type": "resnet", "layer_type": "basic", "depths": [2, 2, 2, 2], "embedding_size": width,
                "hidden_sizes": [width * 2**i for i in range(4)], "out_features": ["stage2", "stage3", "stage4"]}
    kw = dict(use_timm_backbone=False, use_pretrained_backbone=False, backbone_config=backbone, num_labels=5,
              d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
              encoder_ffn_dim=48, decoder_ffn_dim=48, num_queries=12, two_stage_num_proposals=12,
              with_box_refine=refine, two_stage=two_stage)
    kw.update(overrides)
    model = DeformableDetrForObjectDetection(DeformableDetrConfig(**kw)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (0.3 if "sampling_offsets" in name else 0.05))
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                b.normal_(0, 0.1)
            elif name.endswith(("weight", "bias")) and b.is_floating_point():
                b.add_(torch.randn_like(b) * 0.05)
    return model


def inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(2, 3, 96, 128, generator=g)
    valid = torch.ones(2, 96, 128, dtype=torch.long)
    valid[1, 80:, :] = 0  # second image padded at the bottom and right
    valid[1, :, 100:] = 0
    pixels = pixels * valid[:, None]
    return pixels, valid


@pytest.mark.parametrize("refine,two_stage", [(False, False), (True, False), (True, True)],
                         ids=["plain", "refine", "two-stage"])
def test_outputs_match_hf(tmp_path, refine, two_stage):
    hf = hf_model(refine, two_stage)
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    out = tmp_path / "converted.safetensors"
    assert main(["convert", "hf", str(tmp_path / "hf"), str(out)]) == 0
    ours = matchdetr.load(out)
    pixels, valid = inputs()
    with torch.no_grad():
        ref = hf(pixel_values=pixels, pixel_mask=valid)
        got = ours(pixels, ~valid.bool())
    assert (got.logits - ref.logits).abs().max().item() < 1e-4
    assert (got.boxes - ref.pred_boxes).abs().max().item() < 1e-5
    # every decoder layer, not only the last
    assert len(got.aux) == hf.config.decoder_layers - 1
    assert ours.label_map.names == [hf.config.id2label[i] for i in range(5)]


def test_parameter_count_equals_hf_for_the_plain_r50():
    from transformers import DeformableDetrConfig, DeformableDetrForObjectDetection

    cfg = DeformableDetrConfig(use_timm_backbone=False, use_pretrained_backbone=False, num_labels=91,
                               backbone_config={"model_type": "resnet", "out_features": ["stage2", "stage3", "stage4"]})
    hf_count = DeformableDetrForObjectDetection(cfg).num_parameters()  # tied heads counted once
    ours = sum(p.numel() for p in matchdetr.build("deformable-detr-r50", num_classes=91).parameters())
    assert ours == hf_count == 40_069_665


def test_unmappable_keys_are_listed(tmp_path):
    hf = hf_model(False, False)
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    from safetensors.torch import load_file, save_file

    weights = next((tmp_path / "hf").glob("*.safetensors"))
    state = load_file(str(weights))
    state["model.something_new.weight"] = torch.zeros(3)
    save_file(state, str(weights), metadata={"format": "pt"})
    with pytest.raises(ConversionError, match="something_new"):
        convert_hf_deformable_detr(tmp_path / "hf", tmp_path / "x.safetensors")
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    cfg["backbone_config"]["model_type"] = "swin"
    (tmp_path / "hf" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConversionError, match="only HF ResNet"):
        convert_hf_deformable_detr(tmp_path / "hf", tmp_path / "x.safetensors")


def test_timm_named_checkpoint_converts(tmp_path):
    """The released SenseTime checkpoints use a timm ResNet, whose keys are torchvision's names under
    model.backbone.conv_encoder.model.: rewrite an HF-ResNet checkpoint into that layout and convert it."""
    from safetensors.torch import load_file, save_file

    from matchdetr.interop.hf_deformable_detr import _rename_resnet

    hf = hf_model(True, False, width=64)
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    weights = next((tmp_path / "hf").glob("*.safetensors"))
    prefix = "model.backbone.conv_encoder.model."
    state = {(prefix + _rename_resnet(k[len(prefix):]) if k.startswith(prefix) else k): v
             for k, v in load_file(str(weights)).items()}
    save_file(state, str(weights), metadata={"format": "pt"})
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    del cfg["backbone_config"]
    cfg.update(use_timm_backbone=True, backbone="resnet18", backbone_kwargs={"out_indices": [2, 3, 4]})
    (tmp_path / "hf" / "config.json").write_text(json.dumps(cfg))
    ours = matchdetr.load(convert_hf_deformable_detr(tmp_path / "hf", tmp_path / "c.safetensors"))
    pixels, valid = inputs()
    with torch.no_grad():
        ref = hf(pixel_values=pixels, pixel_mask=valid)
        got = ours(pixels, ~valid.bool())
    assert (got.boxes - ref.pred_boxes).abs().max().item() < 1e-5
