"""What `matchdetr models` says about each preset besides its size: the task (boxes or masks), the family, the
COCO AP its paper publishes for the full-size model, and whether the authors' weights can be converted. No torch
here: the figures are data, each with its source.

Published AP: COCO val2017, the preset's backbone (ResNet-50, or Swin-L pretrained on ImageNet-22k), the schedule
the paper trained (12 epochs unless stated); Swin-T's figure is detrex's release, as no paper prints it. Presets whose
exact variant no paper reports (SAM-DETR with DN but without DC5, our Stable-SAM-DETR++) have none. The tiny
presets are the same architectures at CPU size: there is no published figure for them.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCES = {  # key -> where the figure is printed
    "D1": "Deformable-DETR paper (Zhu et al. 2021), table 1",
    "P1": "SAM-DETR++ paper (Zhang et al.), table 1",
    "S2": "Stable-DINO paper (Liu et al. 2023), table 2",
    "S4": "Stable-DINO paper, table 4 (box AP / mask AP)",
    "S3": "Stable-DINO paper, table 3 (Swin-L, IN-22k)",
    "S5": "Stable-DINO paper, table 5",
    "DX": "detrex projects/dino/README.md (the released checkpoint's AP)",
}

WEIGHTS = {  # marker -> what it means
    "release": "the authors' published checkpoint converts: matchdetr convert official (docs/checkpoints.md)",
    "convert": "matchdetr convert official reads checkpoints trained with the authors' code; no weights published",
    "hf": "HF transformers' release (SenseTime) converts: matchdetr convert hf",
}


@dataclass(frozen=True)
class Family:
    name: str  # as the papers name it
    task: str  # boxes | masks


# base name (the preset without -r50 / -tiny) -> family
FAMILIES: dict[str, Family] = {
    "detr": Family("DETR", "boxes"),
    "smca-detr": Family("SMCA-DETR", "boxes"),
    "deformable-detr": Family("Deformable-DETR", "boxes"),
    "deformable-detr-refine": Family("Deformable-DETR", "boxes"),
    "deformable-detr-two-stage": Family("Deformable-DETR", "boxes"),
    "dab-deformable-detr": Family("DAB-Deformable-DETR", "boxes"),
    "dn-deformable-detr": Family("DN-Deformable-DETR", "boxes"),
    "h-deformable-detr": Family("H-DETR", "boxes"),
    "dino": Family("DINO", "boxes"),
    "dino-4scale": Family("DINO", "boxes"),
    "dino-5scale": Family("DINO", "boxes"),
    "sam-detr": Family("SAM-DETR", "boxes"),
    "sam-detr-dc5": Family("SAM-DETR", "boxes"),
    "sam-detr-smca": Family("SAM-DETR", "boxes"),
    "sam-detr-dn": Family("SAM-DETR", "boxes"),
    "sam-detr-smca-dn": Family("SAM-DETR", "boxes"),
    "sam-detr-plus-plus": Family("SAM-DETR++", "boxes"),
    "sam-detr-plus-plus-smca": Family("SAM-DETR++", "boxes"),
    "sam-detr-plus-plus-smca-dn": Family("SAM-DETR++", "boxes"),
    "stable-deformable-detr": Family("Stable-DINO plug-in", "boxes"),
    "stable-dab-deformable-detr": Family("Stable-DINO plug-in", "boxes"),
    "stable-h-deformable-detr": Family("Stable-DINO plug-in", "boxes"),
    "stable-dino": Family("Stable-DINO", "boxes"),
    "stable-dino-4scale": Family("Stable-DINO", "boxes"),
    "stable-dino-5scale": Family("Stable-DINO", "boxes"),
    "stable-sam-detr-plus-plus": Family("Stable-DINO + SAM-DETR++", "boxes"),
    "maskdino": Family("Mask-DINO", "masks"),
    "stable-maskdino": Family("Stable-MaskDINO", "masks"),
}


@dataclass(frozen=True)
class Published:
    ap: str  # box AP, or "box / mask" for instance segmentation
    epochs: int  # the schedule the paper trained
    source: str  # a key of SOURCES

    def text(self) -> str:
        return f"{self.ap} ({self.epochs} ep) [{self.source}]"


PUBLISHED: dict[str, Published] = {
    "detr-r50": Published("22.3", 12, "P1"),  # "DETR-R50 ‡": 300 queries + focal loss, as the preset
    "smca-detr-r50": Published("31.6", 12, "P1"),
    "sam-detr-r50": Published("34.2", 12, "P1"),
    "sam-detr-smca-r50": Published("37.0", 12, "P1"),
    "sam-detr-dc5-r50": Published("39.1", 12, "P1"),
    "sam-detr-plus-plus-r50": Published("41.9", 12, "P1"),
    "sam-detr-plus-plus-smca-r50": Published("43.2", 12, "P1"),
    "sam-detr-plus-plus-smca-dn-r50": Published("44.8", 12, "P1"),
    "deformable-detr-r50": Published("43.8", 50, "D1"),
    "deformable-detr-refine-r50": Published("45.4", 50, "D1"),
    "deformable-detr-two-stage-r50": Published("46.2", 50, "D1"),
    "dab-deformable-detr-r50": Published("46.8", 50, "S2"),
    "dn-deformable-detr-r50": Published("48.6", 50, "S2"),
    "h-deformable-detr-r50": Published("48.7", 12, "S2"),
    "dino-4scale-r50": Published("49.0", 12, "S2"),
    "dino-5scale-r50": Published("49.4", 12, "S2"),
    "stable-dino-4scale-r50": Published("50.4", 12, "S2"),
    "stable-dino-5scale-r50": Published("50.5", 12, "S2"),
    "stable-deformable-detr-r50": Published("45.1", 12, "S5"),
    "stable-dab-deformable-detr-r50": Published("45.2", 12, "S5"),
    "stable-h-deformable-detr-r50": Published("49.2", 12, "S5"),
    "maskdino-r50": Published("45.7 / 41.4", 12, "S4"),
    "stable-maskdino-r50": Published("47.0 / 42.1", 12, "S4"),
    "dino-4scale-swin-t": Published("51.3", 12, "DX"),
    "dino-4scale-swin-l": Published("56.8", 12, "S3"),
    "dino-5scale-swin-l": Published("57.5", 12, "DX"),
    "stable-dino-4scale-swin-l": Published("57.7", 12, "S3"),
}

# preset -> a key of WEIGHTS (the converters' families: interop/official.py, interop/hf_deformable_detr.py)
OFFICIAL: dict[str, str] = {
    "dino-4scale-r50": "release",  # detrex: dino_r50_4scale_12ep_49_2AP.pth (49.2 AP in its README)
    "dino-5scale-r50": "release",  # detrex's 5-scale release
    "maskdino-r50": "release",  # IDEA-Research/MaskDINO model zoo
    "stable-dino-4scale-r50": "convert",
    "stable-dino-5scale-r50": "convert",
    "stable-maskdino-r50": "convert",
    "sam-detr-r50": "convert",  # the SAM-DETR README lists its weights as pending
    "sam-detr-smca-r50": "convert",
    "sam-detr-dc5-r50": "convert",
    "sam-detr-plus-plus-r50": "convert",
    "sam-detr-plus-plus-smca-r50": "convert",
    "dino-4scale-swin-t": "release",  # detrex: dino_swin_tiny_224_4scale_12ep.pth
    "dino-4scale-swin-l": "release",  # detrex: dino_swin_large_384_4scale_12ep.pth / _36ep.pth
    "dino-5scale-swin-l": "release",  # detrex: dino_swin_large_384_5scale_12ep.pth / _36ep.pth
    "stable-dino-4scale-swin-l": "convert",  # the Stable-DINO release links no checkpoint
    "stable-dino-5scale-swin-l": "convert",
    "maskdino-swin-l": "convert",  # the released Swin-L files are low2high models, refused (docs/checkpoints.md)
    "deformable-detr-r50": "hf",
    "deformable-detr-refine-r50": "hf",
    "deformable-detr-two-stage-r50": "hf",
}


def base_name(preset: str) -> str:
    """``dino-4scale-r50`` -> ``dino-4scale``, ``dino-4scale-swin-l`` -> ``dino-4scale``: the backbone or size
    comes last in every preset name (one word, or ``swin-`` and the Swin's size)."""
    head, _, last = preset.rpartition("-")
    return head.removesuffix("-swin") if head.endswith("-swin") else head


def family(preset: str) -> Family:
    return FAMILIES[base_name(preset)]
