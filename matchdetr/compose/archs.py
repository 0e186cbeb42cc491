"""The architectures ``model.arch`` can name, each with the knobs of its own composition and its family's
conventions (the positional-embedding offset of its release, ...). The composition itself is a function in
``compose/detectors.py`` (``ARCH_BUILDERS``); the parts every architecture shares (backbone, transformer sizes,
losses, plug-ins) are other slots of ``model``.

Positional-embedding offsets, the one convention every family states: DETR's release embeds a pixel's position
from its end (``y_embed = cumsum / max``: offset 0, ``models/position_encoding.py``); Deformable-DETR's
and everything built on its code (DAB-, DN-Deformable-DETR, DINO / detrex, Stable-DINO, H-DETR) from its centre
(``(cumsum - 0.5) / max``: offset -0.5, ``models/position_encoding.py``); SAM-DETR's release uses Deformable-DETR's
form for every variant, single scale included (its ``models/position_encoding.py`` serves every ``main.py``
variant).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..fields import Component, knob
from ..models.plugins.mask_query_selection import BOX_INIT
from ..models.plugins.semantic_aligner import RESAMPLE, SEARCH_RANGE


@dataclass
class DetrArch(Component):
    """DETR (Carion et al. 2020) with focal loss and 300 queries (SAM-DETR++'s "DETR-dagger"): one level, a global
    self-attention encoder, a cross-attention decoder over learned queries, one shared head."""

    kind = "detr"
    pos_offset: float = 0.0  # positions from pixel ends, as DETR's release


@dataclass
class SmcaDetrArch(Component):
    """SMCA-DETR (Gao et al. 2021) single scale: DETR whose cross-attention logits get a Gaussian predicted
    from each query."""

    kind = "smca_detr"
    pos_offset: float = 0.0  # DETR's convention (the SMCA release is DETR's code)


@dataclass
class DeformableDetrArch(Component):
    """Deformable-DETR (Zhu et al. 2021): multi-scale deformable encoder and decoder over reference points."""

    kind = "deformable_detr"
    box_refine: bool = False  # iterative box refinement (sec 4.1): per-layer box heads refine the references
    two_stage: bool = False  # encoder proposals become the decoder's initial boxes (sec 4.1)
    pos_offset: float = -0.5  # positions from pixel centres, as Deformable-DETR's release


@dataclass
class DabDeformableDetrArch(Component):
    """DAB-Deformable-DETR: 4-d anchor queries refined layer by layer (with denoising: DN-Deformable-DETR)."""

    kind = "dab_deformable_detr"
    look_forward_twice: bool = False  # DINO sec 3.5: predictions keep the gradient into the previous refinement
    pos_offset: float = -0.5  # Deformable-DETR's convention


@dataclass
class DinoArch(Component):
    """DINO (Zhang et al. 2023): mixed query selection, anchor refinement, per-layer heads plus the encoder's."""

    kind = "dino"
    look_forward_twice: bool = True  # sec 3.5: predictions keep the gradient into the previous refinement
    pos_offset: float = -0.5  # Deformable-DETR's convention (detrex's DINO)


@dataclass
class MaskDinoArch(Component):
    """Mask-DINO (Li et al. CVPR 2023): DINO with a mask branch on a stride-4 pixel embedding, unified query
    selection with mask-enhanced anchors; one class / box / mask head shared by every layer, as released."""

    kind = "mask_dino"
    mask_dim: int = knob(256, ge=1)  # channels of the per-pixel embedding and of each query's mask embedding
    encoder_ffn_dim: int = knob(1024, ge=1)  # the pixel decoder's deformable encoder FFN (the decoder's: transformer)
    # bitmask: the initial anchors are the boxes of the selected proposals' masks (sec 3.3); no: the proposal boxes
    box_init: str = knob("bitmask", choices=BOX_INIT)
    initial_pred: bool = True  # also supervise the selected queries before the first decoder layer (_init)
    look_forward_twice: bool = True  # as DINO
    # The release's pixel decoder embeds positions from pixel ends, without Deformable-DETR's -0.5
    # (maskdino/modeling/pixel_decoder/position_encoding.py, PositionEmbeddingSine: y_embed = cumsum / max * 2pi)
    pos_offset: float = 0.0
    # The release pads each batch to a multiple of 32 (maskdino.py:250, ImageList.from_tensors(images, 32)) ...
    size_divisibility: int = knob(32, ge=1)
    # ... and calls its head without a padding mask (maskdino.py:265): the padding is image content to its encoder,
    # query selection and decoder (models/padding.py); False masks the padding out, as every other family
    padding_is_content: bool = True


@dataclass
class SamDetrArch(Component):
    """SAM-DETR (Zhang et al. CVPR 2022) and SAM-DETR++ (``multiscale``): the Semantics Aligner re-samples each
    query from the image features at searched keypoints in every decoder layer (paper sec 4)."""

    kind = "sam_detr"
    resample: str = knob("keypoints_M", choices=RESAMPLE)  # query re-sampling of table 3
    reweight: bool = True  # multiply the re-sampled queries by sigmoid(Linear(previous query)) (eq. 7-8)
    search_range: str = knob("box", choices=SEARCH_RANGE)  # keypoints inside the reference box, or anywhere
    smca: bool = False  # SMCA Gaussians centred at the keypoints, scales from the keypoint MLP (sec 4.5.1)
    multiscale: bool = False  # SAM-DETR++: C3-C5, deformable encoder, coarse-to-fine decoder (sec 4.3)
    roi_size: int = knob(7, ge=1)  # RoIAlign output size of the region features
    sampling_ratio: int | None = knob(None, ge=1)  # RoIAlign samples per bin and axis; None: ceil(box / bins), as released
    encoder_ffn_dim: int = knob(1024, ge=1)  # multi-scale deformable encoder FFN (the release halves the decoder's)
    group_norm: bool = False  # GroupNorm(32) after the single-scale input projection (the 12-epoch runs)
    pos_offset: float = -0.5  # Deformable-DETR's form, single scale included (the release's position_encoding.py)
