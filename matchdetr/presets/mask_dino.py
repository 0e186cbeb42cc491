"""Instance segmentation presets: Mask-DINO (Li et al. CVPR 2023) and Stable-MaskDINO (Stable-DINO table 4,
Mask-DINO plus the position-supervised loss and the position-modulated cost)."""

from __future__ import annotations

from ..compose.archs import MaskDinoArch
from ..config import Config
from ..losses.masks import PointSampledMaskLossConfig
from ..matching.mask_costs import MaskCostConfig
from ..models.plugins.denoising import MaskDinoDenoisingConfig
from .registry import preset
from .stable import stable
from .tiny import make_tiny


def _mask_dino() -> Config:
    """Mask-DINO-R50, the release's COCO instance config (maskdino_R50_bs16_50ep_3s): backbone C2-C5 (C2 for
    the pixel embedding), a 6-layer deformable encoder over C3-C5 (FFN 1024), 9 decoder layers (FFN 2048),
    300 queries, 8 heads, 4 points; unified query selection with mask-enhanced anchors and the initial
    prediction; denoising of the release's "seg" kind (100 queries, noise 0.4); loss and matching weights class
    4, box L1 5, GIoU 2, mask BCE 5, dice 5 on 12544 sampled points; class-agnostic top-k 100 at test time;
    lr 1e-4 (backbone 1e-5), weight decay 0.05, 12 epochs as Stable-DINO table 4 trains it (drop at 11).

    The release's conventions (so its converted checkpoints see what they were trained on): positions embedded
    without an offset, each batch padded to a multiple of 32 and read whole (padding as content), gradients
    clipped at 0.01, every weight trained (FREEZE_AT 0) and only the backbone at 0.1x; see compose/archs.py and
    the lines below for the source of each."""
    cfg = Config()
    m, t, tr = cfg.model, cfg.model.transformer, cfg.train
    m.arch = MaskDinoArch(mask_dim=256, encoder_ffn_dim=1024, box_init="bitmask", initial_pred=True,
                          look_forward_twice=True)
    # FREEZE_AT 0 (Base-COCO-InstanceSegmentation.yaml:3): every backbone weight trained, BatchNorm frozen
    # (detectron2's default FrozenBN)
    m.backbone.return_levels, m.backbone.frozen_stages = [2, 3, 4, 5], 0
    t.num_levels, t.enc_layers, t.dec_layers, t.num_queries = 3, 6, 9, 300
    t.dim_feedforward, t.enc_points, t.dec_points, t.dropout = 2048, 4, 4, 0.0
    m.denoising = MaskDinoDenoisingConfig(dn_number=100, label_noise=0.4, box_noise=0.4)
    m.loss.class_weight, m.loss.bbox_weight, m.loss.giou_weight = 4.0, 5.0, 2.0
    m.loss.mask = PointSampledMaskLossConfig(mask_weight=5.0, dice_weight=5.0, points=12544)
    m.matcher.cost_class, m.matcher.cost_bbox, m.matcher.cost_giou = 4.0, 5.0, 2.0
    m.matcher.mask_cost = MaskCostConfig(mask_weight=5.0, dice_weight=5.0, points=12544)
    m.postprocess.topk = 100
    cfg.data.masks = True  # the training set reads the instance masks (data/segmentation.py)
    tr.lr, tr.lr_backbone, tr.weight_decay, tr.epochs, tr.lr_drop = 1e-4, 1e-5, 0.05, 12, 11
    # only the backbone trains at 0.1x (train_net.py:264-265, BACKBONE_MULTIPLIER 0.1): no slower sampling offsets
    tr.lr_proj_names = []
    tr.clip_max_norm = 0.01  # full-model L2 clipping at 0.01 (Base-COCO-InstanceSegmentation.yaml:29-33)
    return cfg


def _tiny(cfg: Config) -> Config:
    """At CPU size: the tiny recipe, the pixel embedding at stride 4, the encoder and decoder over C4, C5 and
    one extra level (as dino-tiny), 64-channel masks; 1024 sampled points (a 256 px image has 64x64 = 4096
    mask pixels, fewer than the release's 12544 points)."""
    make_tiny(cfg)
    m = cfg.model
    assert isinstance(m.arch, MaskDinoArch) and m.loss.mask is not None and m.matcher.mask_cost is not None
    m.backbone.return_levels, m.transformer.num_levels = [2, 4, 5], 3
    m.arch.mask_dim, m.arch.encoder_ffn_dim = 64, 512
    m.loss.mask.points = m.matcher.mask_cost.points = 1024
    return cfg


@preset("maskdino-r50")
def maskdino_r50() -> Config:
    return _mask_dino()


@preset("maskdino-tiny")
def maskdino_tiny() -> Config:
    return _tiny(_mask_dino())


# Stable-MaskDINO: the loss and the cost only (our reading of Stable-DINO table 4; no memory fusion, no NMS, as
# Mask-DINO's evaluation). The position-supervised loss is supervised by the BOX IoU of each match (the
# Stable-DINO release's form; no Stable-MaskDINO code is released).
@preset("stable-maskdino-r50")
def stable_maskdino_r50() -> Config:
    return stable(_mask_dino(), fusion=False, nms=False)


@preset("stable-maskdino-tiny")
def stable_maskdino_tiny() -> Config:
    return stable(_tiny(_mask_dino()), fusion=False, nms=False)
