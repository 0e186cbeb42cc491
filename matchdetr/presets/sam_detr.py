"""Semantic-aligned matching presets: SAM-DETR (CVPR 2022), SAM-DETR++ (multi-scale), their SMCA and
DN-DETR combinations, and the SMCA-DETR baseline, each with its ``-tiny`` form.

Full-size counts (trainable, 91 classes, ResNet-50 stem + layer1 frozen) equal the official training logs:
sam-detr-r50 58,073,546 (``--set model.arch.group_norm=true``, as the 12-epoch runs: 58,074,058),
sam-detr-smca-r50 58,122,794, sam-detr-plus-plus-r50 54,972,298, sam-detr-plus-plus-smca-r50 55,021,546.
"""

from __future__ import annotations

from ..compose.archs import SamDetrArch, SmcaDetrArch
from ..config import Config
from ..models.plugins.denoising import DnDetrDenoisingConfig
from .registry import preset
from .tiny import make_tiny


def _sam(multiscale: bool = False, smca: bool = False, dn: bool = False, dc5: bool = False) -> Config:
    """SAM-DETR-R50, 12-epoch recipe of the release: 300 queries, 6+6 layers, FFN 2048, lr 1e-4 (backbone
    1e-5) with the drop after epoch 10, focal loss (class 2, L1 5, GIoU 2), dropout 0.1 (CVPR version).
    SAM-DETR++ (sec 4.3-4.4): C3-C5 with a deformable encoder (4 points, FFN 1024) and the coarse-to-fine
    decoder, dropout 0. DN: DN-DETR's defaults (5 groups, label flip 0.2, box noise 0.4)."""
    cfg = Config()
    m, t, tr = cfg.model, cfg.model.transformer, cfg.train
    m.arch = SamDetrArch(smca=smca, multiscale=multiscale, encoder_ffn_dim=1024)
    m.backbone.dilation = dc5
    t.num_queries, t.dim_feedforward, t.dropout = 300, 2048, 0.1
    if multiscale:
        m.backbone.return_levels = [3, 4, 5]
        t.num_levels, t.enc_points, t.dropout = 3, 4, 0.0
    if dn:
        m.denoising = DnDetrDenoisingConfig(groups=5, label_noise=0.2, box_noise=0.4)
    tr.lr, tr.lr_backbone, tr.epochs, tr.lr_drop = 1e-4, 1e-5, 12, 10
    return cfg


def _sam_tiny(cfg: Config) -> Config:
    """CPU size. Single scale: the stride-16 level like detr-tiny (the DC5 resolution), so a 256 px image gives
    16x16 tokens and a comparison with detr-tiny differs only in the decoder (the DC5 form is therefore the same
    model at this size). Multi-scale: the deformable tiny levels (C4, C5 and one extra stride-2 level; strides
    16/32/64), read coarse to fine by the 3 decoder layers."""
    arch = cfg.model.arch
    assert isinstance(arch, SamDetrArch)
    make_tiny(cfg)
    if arch.multiscale:
        cfg.model.backbone.return_levels, cfg.model.transformer.num_levels = [4, 5], 3
        arch.encoder_ffn_dim = cfg.model.transformer.dim_feedforward // 2
    return cfg


# ------------------------------------------------------------------------------------------- SAM-DETR
@preset("sam-detr-r50")
def sam_detr_r50() -> Config:
    return _sam()


@preset("sam-detr-dc5-r50")
def sam_detr_r50_dc5() -> Config:
    return _sam(dc5=True)


@preset("sam-detr-smca-r50")
def sam_detr_smca_r50() -> Config:
    return _sam(smca=True)


@preset("sam-detr-dn-r50")
def sam_detr_dn_r50() -> Config:
    return _sam(dn=True)


@preset("sam-detr-smca-dn-r50")
def sam_detr_smca_dn_r50() -> Config:
    return _sam(smca=True, dn=True)


# ----------------------------------------------------------------------------------------- SAM-DETR++
@preset("sam-detr-plus-plus-r50")
def sam_detr_plus_plus_r50() -> Config:
    return _sam(multiscale=True)


@preset("sam-detr-plus-plus-smca-r50")
def sam_detr_plus_plus_smca_r50() -> Config:
    return _sam(multiscale=True, smca=True)


@preset("sam-detr-plus-plus-smca-dn-r50")
def sam_detr_plus_plus_smca_dn_r50() -> Config:
    return _sam(multiscale=True, smca=True, dn=True)


# ------------------------------------------------------------------------------------------- SMCA-DETR
@preset("smca-detr-r50")
def smca_detr_r50() -> Config:
    """SMCA-DETR baseline (single scale): DETR-R50 with 300 queries and focal loss whose cross-attention is
    modulated by a Gaussian predicted from each query (Gao et al. 2021); same recipe as ``detr-r50``."""
    cfg = Config()
    cfg.model.arch = SmcaDetrArch()
    return cfg


# ------------------------------------------------------------------------------------------------ tiny
_TINY = {
    "sam-detr-tiny": sam_detr_r50,
    "sam-detr-dc5-tiny": sam_detr_r50_dc5,
    "sam-detr-smca-tiny": sam_detr_smca_r50,
    "sam-detr-dn-tiny": sam_detr_dn_r50,
    "sam-detr-smca-dn-tiny": sam_detr_smca_dn_r50,
    "sam-detr-plus-plus-tiny": sam_detr_plus_plus_r50,
    "sam-detr-plus-plus-smca-tiny": sam_detr_plus_plus_smca_r50,
    "sam-detr-plus-plus-smca-dn-tiny": sam_detr_plus_plus_smca_dn_r50,
}
for _name, _full in _TINY.items():
    preset(_name)(lambda full=_full: _sam_tiny(full()))


@preset("smca-detr-tiny")
def smca_detr_tiny() -> Config:
    return make_tiny(smca_detr_r50())  # the stride-16 level, as detr-tiny
