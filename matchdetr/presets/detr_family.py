"""DETR-family presets: DETR, Deformable-DETR (plain, refine, two-stage), DAB-, DN-Deformable-DETR, DINO and
H-Deformable-DETR, each with its ``-tiny`` form."""

from __future__ import annotations

from ..compose.archs import DabDeformableDetrArch, DeformableDetrArch, DetrArch, DinoArch
from ..config import Config
from ..models.plugins.denoising import DinoDenoisingConfig, DnDetrDenoisingConfig
from ..models.plugins.hybrid_matching import OneToManyConfig
from .registry import preset
from .tiny import make_tiny


# -------------------------------------------------------------------------------------------------- DETR
@preset("detr-r50")
def detr_r50() -> Config:
    """DETR-R50 with 300 queries and sigmoid focal loss: SAM-DETR++ table 1's "DETR-dagger" (41M, 22.3 AP
    at 12 epochs). Stem + layer1 frozen; lr drop at epoch 11 of 12."""
    cfg = Config()
    cfg.model.arch = DetrArch()
    cfg.model.backbone.return_levels = [5]
    return cfg


@preset("detr-tiny")
def detr_tiny() -> Config:
    return make_tiny(detr_r50())  # the stride-16 level: a 256 px image gives 16x16 tokens


# ------------------------------------------------------------------------------------- Deformable-DETR
def _deformable(box_refine: bool = False, two_stage: bool = False) -> Config:
    """Deformable-DETR-R50 (Zhu et al. 2021): C3-C5 + one extra level, 6+6 deformable layers, 8 heads,
    4 points, FFN 1024, 300 queries; lr 2e-4 (backbone 2e-5, offsets and reference points x0.1), 50 epochs
    with the drop at 40."""
    cfg = Config()
    m, t, tr = cfg.model, cfg.model.transformer, cfg.train
    m.arch = DeformableDetrArch(box_refine=box_refine, two_stage=two_stage)
    m.backbone.return_levels = [3, 4, 5]
    t.dim_feedforward, t.num_levels, t.enc_points, t.dec_points = 1024, 4, 4, 4
    tr.lr, tr.lr_backbone, tr.epochs, tr.lr_drop = 2e-4, 2e-5, 50, 40
    tr.lr_proj_names, tr.lr_proj_mult = ["sampling_offsets", "reference_points"], 0.1
    return cfg


def _deformable_tiny(cfg: Config) -> Config:
    """Multi-scale at CPU size: C4, C5 and one extra stride-2 level (strides 16/32/64). The stride-8 level
    would hold three quarters of the encoder tokens and triple the step time (1.08 s vs 0.37 s measured at
    batch 8, 288 px; docs/benchmarks.md)."""
    make_tiny(cfg)
    cfg.model.backbone.return_levels, cfg.model.transformer.num_levels = [4, 5], 3
    return cfg


@preset("deformable-detr-r50")
def deformable_detr_r50() -> Config:
    return _deformable()


@preset("deformable-detr-refine-r50")
def deformable_detr_r50_refine() -> Config:
    return _deformable(box_refine=True)


@preset("deformable-detr-two-stage-r50")
def deformable_detr_r50_two_stage() -> Config:
    return _deformable(box_refine=True, two_stage=True)


@preset("deformable-detr-tiny")
def deformable_detr_tiny() -> Config:
    return _deformable_tiny(_deformable())


@preset("deformable-detr-refine-tiny")
def deformable_detr_refine_tiny() -> Config:
    return _deformable_tiny(_deformable(box_refine=True))


@preset("deformable-detr-two-stage-tiny")
def deformable_detr_two_stage_tiny() -> Config:
    return _deformable_tiny(_deformable(box_refine=True, two_stage=True))


# --------------------------------------------------------------------------------- DAB-Deformable-DETR
@preset("dab-deformable-detr-r50")
def dab_deformable_detr_r50() -> Config:
    """DAB-Deformable-DETR-R50: Deformable-DETR with 4-d anchor queries refined layer by layer."""
    cfg = _deformable(box_refine=True)
    cfg.model.arch = DabDeformableDetrArch(look_forward_twice=False)
    return cfg


@preset("dab-deformable-detr-tiny")
def dab_deformable_detr_tiny() -> Config:
    return _deformable_tiny(dab_deformable_detr_r50())


# -------------------------------------------------------------------------------------- DN / DINO
@preset("dn-deformable-detr-r50")
def dn_deformable_detr_r50() -> Config:
    """DN-Deformable-DETR: DAB-Deformable-DETR with DN-DETR's denoising (5 groups, label flip 0.2, box noise
    0.4, positives only)."""
    cfg = dab_deformable_detr_r50()
    cfg.model.denoising = DnDetrDenoisingConfig(groups=5, label_noise=0.2, box_noise=0.4)
    return cfg


@preset("dn-deformable-detr-tiny")
def dn_deformable_detr_tiny() -> Config:
    return _deformable_tiny(dn_deformable_detr_r50())


def _dino(levels: list[int]) -> Config:
    """DINO-R50 (12-epoch recipe, detrex settings): 900 queries, FFN 2048, dropout 0, contrastive denoising
    (dn_number 100, label noise 0.5, box noise 1.0), mixed query selection, look forward twice; classification
    loss weight 1.0 (matching cost 2.0); stem frozen; lr 1e-4 (backbone 1e-5), drop at epoch 11."""
    cfg = _deformable(box_refine=True)
    m, t, tr = cfg.model, cfg.model.transformer, cfg.train
    m.arch = DinoArch(look_forward_twice=True)
    m.backbone.return_levels, m.backbone.frozen_stages = levels, 1
    t.num_levels, t.num_queries, t.dim_feedforward, t.dropout = len(levels) + 1, 900, 2048, 0.0
    m.denoising = DinoDenoisingConfig(dn_number=100, label_noise=0.5, box_noise=1.0)
    m.loss.class_weight = 1.0
    m.postprocess.topk = 300
    tr.lr, tr.lr_backbone, tr.epochs, tr.lr_drop = 1e-4, 1e-5, 12, 11
    return cfg


@preset("dino-4scale-r50")
def dino_4scale_r50() -> Config:
    return _dino([3, 4, 5])


@preset("dino-5scale-r50")
def dino_5scale_r50() -> Config:
    return _dino([2, 3, 4, 5])


@preset("dino-tiny")
def dino_tiny() -> Config:
    """DINO-4scale at CPU size (the tiny levels: C4, C5 + one extra)."""
    cfg = _deformable_tiny(dino_4scale_r50())
    cfg.model.transformer.num_queries, cfg.model.postprocess.topk = 100, 100
    # ~0.9 s per iteration on 2 cores (EfficientNet-Lite0, denoising queries): 600 iterations are the demo's
    # training minutes; the AP still climbs at that point (docs/benchmarks.md: AP 19.2 at 1000 iterations)
    cfg.train.iters, cfg.train.lr_drop, cfg.train.eval_every = 600, 480, 300
    return cfg


@preset("dino-5scale-tiny")
def dino_5scale_tiny() -> Config:
    """DINO-5scale at CPU size: one finer level than dino-tiny (C3, C4, C5 + one extra)."""
    cfg = dino_tiny()
    cfg.model.backbone.return_levels, cfg.model.transformer.num_levels = [3, 4, 5], 4
    return cfg


# ------------------------------------------------------------------------------------------- H-DETR
@preset("h-deformable-detr-r50")
def h_deformable_detr_r50() -> Config:
    """H-Deformable-DETR (12-epoch recipe): two-stage Deformable-DETR with refinement plus a one-to-many
    branch of 1500 queries matched to the GT repeated 6 times (weight 1.0); 300 one-to-one queries."""
    cfg = _deformable(box_refine=True, two_stage=True)
    cfg.model.hybrid = OneToManyConfig(num_queries=1500, k=6, weight=1.0)
    cfg.train.epochs, cfg.train.lr_drop = 12, 11
    return cfg


@preset("h-deformable-detr-tiny")
def h_deformable_detr_tiny() -> Config:
    cfg = _deformable_tiny(h_deformable_detr_r50())
    cfg.model.hybrid.num_queries = 300  # 3x the 100 one-to-one queries (full size: 5x) to bound the CPU step
    return cfg
