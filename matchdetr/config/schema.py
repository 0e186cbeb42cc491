"""Nested dataclass configuration with typed ``key.sub=value`` overrides.

A preset (``presets.py``) is a function returning a :class:`Config`. Every number of a model or recipe lives
here with a comment, never as a literal inside a layer. Configs are data: they are saved as JSON inside
checkpoints and read back with ``json``; nothing is ever evaluated.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .tree import ConfigError, did_you_mean, from_dict, set_value, valid_keys  # noqa: F401  (the API)


# --------------------------------------------------------------------------------------------------- model
@dataclass
class BackboneConfig:
    name: str = "resnet50"  # resnet18 | resnet34 | resnet50 | resnet101
    width: int = 64  # stem / first-stage width; 64 is torchvision's, smaller values make a narrower net
    frozen_stages: int = 2  # 0: nothing frozen, 1: stem, 2: stem + layer1 (DETR/SAM-DETR), 5: everything
    norm: str = "frozen_bn"  # frozen_bn (pretrained, DETR) | bn (trainable; for training from scratch)
    dilation: bool = False  # DC5: dilate the last stage (stride 16 instead of 32)
    return_levels: list[int] = field(default_factory=lambda: [5])  # C2..C5 by stride exponent
    weights: str = ""  # path to a torchvision ImageNet ResNet state-dict file (.pth or .safetensors)
    # > 0 (and no `weights`): before detection training, train the ResNet for this many epochs as a classifier of
    # the training set's box crops, the stand-in for ImageNet weights (engine/backbone_pretrain.py; cached).
    pretrain_epochs: int = 0
    pretrain_size: int = 64  # side of those crops in pixels


@dataclass
class TransformerConfig:
    hidden_dim: int = 256  # d
    num_heads: int = 8
    enc_layers: int = 6
    dec_layers: int = 6
    dim_feedforward: int = 2048
    dropout: float = 0.1
    pre_norm: bool = False  # DETR uses post-norm
    num_queries: int = 300  # DETR-dagger of SAM-DETR++ table 1 uses 300 queries
    # Deformable attention (Deformable-DETR): feature levels (backbone levels + extra stride-2 convs) and
    # sampling points per level and head, in the encoder and in the decoder's cross-attention.
    num_levels: int = 4
    enc_points: int = 4
    dec_points: int = 4
    box_refine: bool = False  # iterative box refinement (Deformable-DETR sec 4.1): per-layer box heads
    two_stage: bool = False  # encoder proposals become the decoder's initial boxes (Deformable-DETR sec 4.1)
    look_forward_twice: bool = False  # DINO sec 3.5: predictions keep the gradient into the previous refinement


@dataclass
class DenoisingConfig:
    # Training-only denoising queries (DN-DETR; DINO's contrastive; Mask-DINO's). none | dn_detr | dino | mask_dino
    style: str = "none"
    dn_number: int = 100  # DINO: groups = max(dn_number // max GT per image in the batch, 1)
    groups: int = 5  # DN-DETR: fixed number of groups
    label_noise: float = 0.5  # DN-DETR: flip probability (0.2); DINO: 0.5 (flips half of that, as released)
    box_noise: float = 1.0  # lambda: DN-DETR 0.4, DINO 1.0


@dataclass
class HybridConfig:
    # H-DETR's one-to-many branch (training only): extra queries matched to the GT repeated k times.
    num_one2many: int = 0  # 0 = off; H-Deformable-DETR: 1500
    k: int = 6
    weight: float = 1.0


@dataclass
class SamConfig:
    # Semantic-aligned matching (SAM-DETR / SAM-DETR++, arch sam_detr; paper sec 4).
    resample: str = "keypoints_M"  # query re-sampling (table 3): avg_pool | max_pool | keypoint_1 | keypoints_M
    reweight: bool = True  # multiply the re-sampled queries by sigmoid(Linear(previous query)) (eq. 7-8)
    search_range: str = "box"  # keypoints inside the reference box (box) or anywhere in the image (image)
    smca: bool = False  # SMCA Gaussians centred at the keypoints, scales from the keypoint MLP (sec 4.5.1)
    multiscale: bool = False  # SAM-DETR++: C3-C5, deformable encoder, coarse-to-fine decoder (sec 4.3)
    roi_size: int = 7  # RoIAlign output size of the region features
    sampling_ratio: int = -1  # RoIAlign samples per bin and axis; <= 0: adaptive ceil(box / bins), as released
    encoder_ffn_dim: int = 1024  # multi-scale deformable encoder FFN (the release halves the decoder's 2048)
    group_norm: bool = False  # GroupNorm(32) after the single-scale input projection (the 12-epoch runs)


@dataclass
class MatcherConfig:
    # C = w_cls * focal_cost + w_L1 * L1(cxcywh) + w_giou * (-GIoU)  (detr-family spec, "Matching")
    cost_class: float = 2.0
    cost_bbox: float = 5.0
    cost_giou: float = 2.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    # focal | position_modulated (Stable-DINO eq. 4: the focal cost at p * f2(s'), s' = rescaled GIoU)
    class_cost: str = "focal"
    pmc_power: float = 0.5  # f2(x) = x^pmc_power; paper table 9: 0 (f2 = 1), 0.25, 0.5 (default), 1, 2
    # Instance masks (Mask-DINO's hybrid matching): + w_mask * pairwise sigmoid BCE + w_dice * dice, both on one
    # draw of mask_points uniform points per image (matching/mask_costs.py). 0 = cost not added (box detection);
    # Mask-DINO's COCO config: cost_mask 5.0, cost_dice 5.0, mask_points 12544 (112 * 112).
    cost_mask: float = 0.0
    cost_dice: float = 0.0
    mask_points: int = 12544


@dataclass
class LossConfig:
    class_weight: float = 2.0
    bbox_weight: float = 5.0
    giou_weight: float = 2.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    aux_loss: bool = True  # supervise every decoder layer, each re-matched
    # focal | position_supervised (Stable-DINO eq. 3: the positive target is f1(IoU), rescaled per image) |
    # the rest of the IoU-aware family (losses/iou_aware.py): varifocal (RT-DETR, D-FINE) | quality_focal (GFL) |
    # ia_bce (Align-DETR, LW-DETR, RF-DETR) | matchability_aware (DEIM)
    class_loss: str = "focal"
    psl_f1: str = "s^2"  # f1 of table 7: s^a (a > 0), s^a*p^b (hurts; ablation), exp, sin
    psl_rescale: str = "one"  # one (largest target per image -> 1) | max_iou | none (paper sec 2.2)
    psl_denoising: bool = True  # denoising positives also get the position target (the release does)
    vfl_alpha: float = 0.75  # varifocal: negatives' weight alpha * p^gamma (VarifocalNet, RT-DETR)
    vfl_gamma: float = 2.0
    qfl_beta: float = 2.0  # quality focal: |y - p|^beta (GFL)
    ia_bce_alpha: float = 0.25  # IA-BCE: target p^alpha * IoU^(1 - alpha) (Align-DETR, LW-DETR)
    ia_bce_gamma: float = 2.0  # IA-BCE: negatives' weight p^gamma
    mal_gamma: float = 1.5  # matchability-aware: target IoU^gamma, negatives' weight p^gamma (DEIM)
    mal_alpha: float = -1.0  # matchability-aware: < 0 none (DEIM's default), else the negatives' extra factor
    dn_class_weight: float = -1.0  # class weight of denoising sets; < 0: same as class_weight
    # Instance masks (Mask-DINO, losses/masks.py): point-sampled sigmoid BCE ("mask") and dice on every supervised
    # set. Both 0 = mask loss not added (box detection); Mask-DINO's COCO config: mask_weight 5.0, dice_weight 5.0,
    # 12544 points (112 * 112), 3x oversampled candidates, 0.75 of the points by uncertainty (PointRend sec 3.1).
    mask_weight: float = 0.0
    dice_weight: float = 0.0
    mask_points: int = 12544
    mask_oversample_ratio: float = 3.0
    mask_importance_ratio: float = 0.75


@dataclass
class PostprocessConfig:
    topk: int = 100  # top-k over (queries x classes): 100 for 300 queries, 300 for 900
    nms_iou: float = 0.0  # > 0: class-aware NMS at this IoU after the top-k (Stable-DINO evaluates at 0.8)


@dataclass
class MaskConfig:
    # Mask-DINO (model.arch=mask_dino; Li et al. CVPR 2023, the release's COCO instance config)
    mask_dim: int = 256  # channels of the per-pixel embedding and of each query's mask embedding
    encoder_ffn_dim: int = 1024  # the pixel decoder's deformable encoder FFN (the decoder's: transformer.dim_feedforward)
    box_init: str = "bitmask"  # bitmask: initial anchors = boxes of the selected proposals' masks (sec 3.3); no
    initial_pred: bool = True  # also supervise the selected queries before the first decoder layer (_init)


@dataclass
class ModelConfig:
    arch: str = "detr"  # which composition compose/detectors.py assembles
    num_classes: int = 91
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    matcher: MatcherConfig = field(default_factory=MatcherConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    denoising: DenoisingConfig = field(default_factory=DenoisingConfig)
    hybrid: HybridConfig = field(default_factory=HybridConfig)
    sam: SamConfig = field(default_factory=SamConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    # Memory fusion (Stable-DINO sec 3): none | simple | u_like | dense; backbone features + encoder layers
    memory_fusion: str = "none"


# ---------------------------------------------------------------------------------------------------- data
@dataclass
class DataConfig:
    # Standard DETR augmentation (detr-family spec, "Recipe"): flip, then 50/50 multi-scale resize, or
    # resize + random crop + multi-scale resize. Sizes are shorter-side pixels.
    train_scales: list[int] = field(default_factory=lambda: list(range(480, 801, 32)))
    train_max_size: int = 1333
    crop_resize_scales: list[int] = field(default_factory=lambda: [400, 500, 600])
    crop_min: int = 384
    crop_max: int = 600
    test_size: int = 800
    test_max_size: int = 1333
    hflip_prob: float = 0.5
    num_workers: int = 2
    # Read instance masks (each annotation's COCO `segmentation`) into Target.masks for instance segmentation;
    # off for box detection, which then never decodes a mask.
    masks: bool = False
    # ImageNet normalisation, RGB
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])


# --------------------------------------------------------------------------------------------------- train
@dataclass
class TrainConfig:
    lr: float = 1e-4
    lr_backbone: float = 1e-5
    weight_decay: float = 1e-4
    clip_max_norm: float = 0.1  # grad-norm clipping; 0 disables
    batch_size: int = 16  # per process
    epochs: int = 12  # used when iters == 0
    iters: int = 0  # > 0: train for this many iterations instead of epochs
    lr_drop: float = 11.0  # step where lr x lr_drop_factor: an epoch (epoch schedule) or an iteration
    lr_drop_factor: float = 0.1
    warmup_iters: int = 0
    # Parameters whose name contains one of these keys train at lr * lr_proj_mult (Deformable-DETR trains the
    # sampling-offset and reference-point projections at 0.1x).
    lr_proj_names: list[str] = field(default_factory=list)
    lr_proj_mult: float = 0.1
    amp: str = "none"  # none | bf16 | fp16 (CUDA only; CPU runs fp32)
    compile: bool = False  # the model's forward through torch.compile (engine/compile.py); eager if unavailable
    # Recompute each encoder/decoder layer in the backward pass instead of storing its activations: less peak
    # memory for more time (models/layers.py: run_layer); the gradients are the same.
    checkpoint_activations: bool = False
    ema_decay: float = 0.0  # > 0 keeps an exponential moving average of the weights
    eval_every: int = 0  # iterations between evaluations; 0 = only at the end
    checkpoint_every: int = 500  # iterations between checkpoints; the last iteration always saves
    keep_last: int = 2  # checkpoints kept on disk
    # A step whose loss or gradient is NaN/inf is skipped with a warning; after this many in a row the run saves
    # a checkpoint and stops with a one-line explanation (the model is diverging, not hitting one bad batch).
    max_nonfinite_skips: int = 20
    log_every: int = 10
    tensorboard: bool = False
    seed: int = 42
    eval_threshold: float = 0.0  # score threshold for the COCO results file
    # Weights-only start (`matchdetr train --init`): a checkpoint file or run directory; the optimizer and the
    # schedule start fresh, and class heads are re-initialised when its class set differs (matchdetr/engine/finetune.py).
    init: str = ""
    unstable_every: int = 0  # > 0: log the per-layer unstable score (Stable-DINO sec 2.4.3) this often
    unstable_images: int = 20  # ... on the first this-many validation images


@dataclass
class Config:
    preset: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        return from_dict(cls, data, "")


def apply_override(cfg: Config, assignment: str) -> None:
    """Apply one ``key.sub=value`` override in place; raises ConfigError with a one-line message."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like key.sub=value")
    key, raw = assignment.split("=", 1)
    key = key.strip()
    set_value(cfg, key, raw)


def apply_overrides(cfg: Config, overrides: dict[str, Any] | list[str] | None) -> Config:
    """Apply ``{"a.b": value}`` or ``["a.b=value", ...]`` overrides in place and return ``cfg``."""
    if not overrides:
        return cfg
    if isinstance(overrides, dict):
        for key, value in overrides.items():
            set_value(cfg, key, value)
    else:
        for item in overrides:
            apply_override(cfg, item)
    return cfg
