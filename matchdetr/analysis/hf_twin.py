"""Build the HF transformers ``DeformableDetrForObjectDetection`` equal to one of our Deformable-DETR models
(same architecture, same weights), for speed comparisons and parity checks. Needs transformers (dev extra)."""

from __future__ import annotations

from typing import Any

from ..interop.hf_deformable_detr import convert_state_dict, rename_key

_DEPTHS = {18: ("basic", [2, 2, 2, 2]), 34: ("basic", [3, 4, 6, 3]), 50: ("bottleneck", [3, 4, 6, 3]),
           101: ("bottleneck", [3, 4, 23, 3])}


def hf_config(cfg: Any) -> Any:
    """The ``DeformableDetrConfig`` of a matchdetr Config of arch ``deformable_detr``."""
    try:
        from transformers import DeformableDetrConfig
    except ImportError as err:  # pragma: no cover
        raise RuntimeError("--vs-hf needs the transformers package (pip install transformers)") from err
    m, t = cfg.model, cfg.model.transformer
    if m.arch.kind != "deformable_detr":
        raise ValueError(f"no HF transformers twin for model.arch '{m.arch.kind}' (only deformable_detr)")
    if m.backbone.kind != "resnet":
        raise ValueError(f"no HF transformers twin for a {m.backbone.kind} backbone (HF's Deformable-DETR has "
                         f"ResNets; set model.backbone=resnet)")
    kind, depths = _DEPTHS[m.backbone.depth]
    exp = 1 if kind == "basic" else 4
    backbone = {"model_type": "resnet", "layer_type": kind, "depths": depths, "embedding_size": m.backbone.width,
                "hidden_sizes": [m.backbone.width * 2**i * exp for i in range(4)],
                "out_features": [f"stage{lvl - 1}" for lvl in m.backbone.return_levels]}
    return DeformableDetrConfig(
        use_timm_backbone=False, use_pretrained_backbone=False, backbone_config=backbone, num_labels=m.num_classes,
        d_model=t.hidden_dim, encoder_layers=t.enc_layers, decoder_layers=t.dec_layers,
        encoder_attention_heads=t.num_heads, decoder_attention_heads=t.num_heads, encoder_ffn_dim=t.dim_feedforward,
        decoder_ffn_dim=t.dim_feedforward, num_queries=t.num_queries, two_stage_num_proposals=t.num_queries,
        num_feature_levels=t.num_levels, encoder_n_points=t.enc_points, decoder_n_points=t.dec_points,
        with_box_refine=m.arch.box_refine, two_stage=m.arch.two_stage, dropout=t.dropout,
        # HF defaults both to 0.0; the original (and ours) apply `dropout` after the FFN's activation and to the
        # decoder self-attention's weights (nn.MultiheadAttention(dropout=0.1)), so a training step of the twin
        # draws the same dropouts as ours.
        activation_dropout=t.dropout, attention_dropout=t.dropout,
    )


def hf_twin(ours: Any) -> Any:
    """An HF model whose weights are copied into ``ours`` as well, so both compute the same function, and whose
    trainable parameters are ours', so both training steps do the same work.

    The second part matters: HF's ``DeformableDetrConvEncoder`` means to train ResNet stages 2-4 but tests the
    names for ``"stage.1"`` where its backbone's are ``encoder.stages.1...``, so every backbone parameter of an
    HF-ResNet model (``use_timm_backbone=False``) is left frozen, and its backward skips the whole backbone.
    """
    from transformers import DeformableDetrForObjectDetection

    hf = DeformableDetrForObjectDetection(hf_config(ours.config))
    levels = len(ours.config.model.backbone.return_levels)
    state = convert_state_dict(hf.state_dict(), ours.state_dict(), levels)
    ours.load_state_dict({**ours.state_dict(), **state})
    trainable = {name: p.requires_grad for name, p in ours.named_parameters()}
    for name, p in hf.named_parameters():
        mine = rename_key(name, levels)
        if mine in trainable:
            p.requires_grad_(trainable[mine])
    return hf
