"""Import the authors' released checkpoints: ``matchdetr convert official --family dino|stable-dino|sam-detr|
maskdino|stable-maskdino``.

- ``dino``: detrex-format DINO (``projects/dino``, e.g. ``dino_r50_4scale_12ep.pth``), detectron2 ResNet names.
- ``stable-dino``: IDEA-Research/Stable-DINO (a detrex fork): DINO plus the dense memory-fusion layer.
- ``sam-detr``: ZhangGongjie/SAM-DETR (a DETR fork): torchvision ResNet names, fused attention projections.
- ``maskdino``: IDEA-Research/MaskDINO (detectron2): the R50 instance-segmentation models; ``stable-maskdino``
  converts the same layout onto the Stable-MaskDINO preset.

The per-family name rules live in ``official_dino.py``, ``official_sam_detr.py`` and ``official_maskdino.py``, the helpers they share in
``official_rules.py``. This module reads the file
(``torch.load(weights_only=True)`` only: a checkpoint that pickles anything but tensors and plain containers is
refused, never unpickled), runs a family's rules over every key, and checks the result against the state dict
of the matchdetr model it builds: a key no rule maps, a matchdetr tensor left without a source and a shape that
differs are each a ``ConversionError`` whose one-line message lists the keys. Keys a family drops on purpose
(training-only counters, tied duplicates) are named in that family's ``IGNORED`` list.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor

from ..data.coco import LabelMap
from ..io.safe_load import refusal_reason, refused_global
from .errors import ConversionError
from .official_rules import Family, listing

FAMILIES = ("dino", "stable-dino", "sam-detr", "maskdino", "stable-maskdino")

# COCO 2017 detection categories (instances_val2017.json): the 80 ids, sorted, and their names.
COCO_IDS = [*range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70, *range(72, 83),
            *range(84, 91)]
COCO_NAMES = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
]
def coco_label_map(num_classes: int) -> LabelMap:
    """The label map of a released COCO model.

    80 classes (detectron2/detrex): label i is the i-th COCO category id in sorted order. 91 classes (DETR
    forks such as SAM-DETR): the label is the COCO category id itself; the 11 unused ids are named ``N/A``.
    Anything else keeps the labels as their own ids (a checkpoint fine-tuned on another dataset).
    """
    if num_classes == 80:
        return LabelMap(list(COCO_IDS), list(COCO_NAMES))
    if num_classes == 91:
        names = dict(zip(COCO_IDS, COCO_NAMES))
        return LabelMap(list(range(91)), [names.get(i, "N/A") for i in range(91)])
    return LabelMap(list(range(num_classes)), [f"class_{i}" for i in range(num_classes)])


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The flat ``{name: tensor}`` state dict of a released checkpoint (``.pth``/``.pt``/``.safetensors``).

    detectron2/detrex and DETR-fork checkpoints keep the weights under ``model`` (next to optimizer state and
    counters, which are not read); a bare state dict is accepted as well.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        try:
            obj: object = load_file(str(path), device="cpu")
        except Exception as err:
            raise ConversionError(f"{path}: cannot read as safetensors: {_one_line(err)}") from None
    else:
        try:
            # DETR forks (SAM-DETR's main.py) save their argparse.Namespace next to the weights: a plain attribute
            # bag whose unpickling runs no code, so it is the one class we allow besides tensors and containers.
            with torch.serialization.safe_globals([argparse.Namespace]):
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            # weights_only=True refuses pickled classes (they could run code on load). The released files hold
            # only tensors and containers; anything else is a different or untrusted file: we do not retry unsafely.
            if refused_global(err) is None:
                raise ConversionError(f"{path}: cannot read as a PyTorch checkpoint (torch.load(weights_only=True) "
                                      f"failed: {refusal_reason(err)})") from None
            raise ConversionError(f"{path}: refused by torch.load(weights_only=True) ({refusal_reason(err)}); matchdetr never "
                                  f"unpickles arbitrary objects: re-save only the weights, e.g. "
                                  f"torch.save({{'model': ckpt['model']}}, path), in an environment you trust") from None
        except Exception as err:
            raise ConversionError(f"{path}: cannot read as a PyTorch checkpoint: {_one_line(err)}") from None
    if isinstance(obj, dict):
        for wrapper in ("model", "state_dict"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        what = f"a dict with keys {listing([str(k) for k in obj])}" if isinstance(obj, dict) else type(obj).__name__
        raise ConversionError(f"{path}: expected a state dict of tensors (or one under 'model'), got {what}")
    return obj


# A rule maps one official (key, tensor) to our (key, tensor) pairs: [] = no rule knows the key, None = the key
# is dropped on purpose (listed in the family's IGNORED).
def map_state_dict(family: Family, state: dict[str, Tensor], target: dict[str, Tensor], where: str) -> dict[str, Tensor]:
    """Rename ``state`` onto ``target`` (our model's state dict); raises ConversionError listing every problem."""
    state = family.prepare(state, where)
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        mapped = family.rule(key, value)
        if mapped is None:
            continue
        if not mapped or any(ours not in target for ours, _ in mapped):
            unknown.append(key)
            continue
        for ours, tensor in mapped:
            if ours in out:
                raise ConversionError(f"{where}: two official tensors map to {ours} (the second is {key})")
            out[ours] = family.fit(ours, tensor, target[ours])
    missing = [k for k in target if k not in out and not k.endswith("num_batches_tracked")]
    if unknown or missing:
        raise ConversionError(f"{where}: {len(unknown)} official keys have no matchdetr name {listing(unknown)}; "
                              f"{len(missing)} matchdetr keys have no source {listing(missing)}{family.hint(unknown)}")
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}" for k, v in out.items() if v.shape != target[k].shape]
    if wrong:
        raise ConversionError(f"{where}: shapes differ (official vs matchdetr): {listing(wrong)}; is --preset the "
                              f"released architecture?")
    for key, value in target.items():  # BatchNorm counters of trainable-BN presets: not in frozen-BN releases
        if key not in out:
            out[key] = value
    return {k: v.to(target[k].dtype) for k, v in out.items()}


def _family(name: str) -> Family:
    if name in ("dino", "stable-dino"):
        from .official_dino import family
    elif name == "sam-detr":
        from .official_sam_detr import family  # type: ignore[no-redef]
    elif name in ("maskdino", "stable-maskdino"):
        from .official_maskdino import family  # type: ignore[no-redef]
    else:
        raise ConversionError(f"unknown family '{name}'; available: {', '.join(FAMILIES)}")
    return family(name)


# Stable-DINO's class-aware NMS at test time (paper sec 4), which --nms turns on for a converted model.
NMS_IOU = 0.8


def convert_official(family: str, src: str | Path, out: str | Path, preset: str | None = None,
                     nms: bool = False, overrides: list[str] | None = None) -> Path:
    """Convert a released checkpoint of ``family`` into a matchdetr checkpoint at ``out``.

    nms: keep class-aware NMS at IoU 0.8 after the top-k (our ``stable-*`` presets evaluate with it, as the paper
    does). Off by default whatever the preset says, because none of the releases' evaluation configs turns it on:
    a converted checkpoint then reproduces the release's own evaluation.
    overrides: ``key.sub=value`` config changes applied after the architecture is read from the checkpoint, for a
    checkpoint trained with other settings than the preset's (e.g. a smaller backbone).
    """
    from ..api import from_config
    from ..config import apply_overrides

    fam = _family(family)
    state = read_checkpoint(src)
    cfg = apply_overrides(fam.config(state, preset, str(src)), overrides)
    fam.bind(cfg)
    cfg.model.backbone.weights = None  # the backbone comes from the checkpoint
    cfg.model.postprocess.nms_iou = NMS_IOU if nms else None
    model = from_config(cfg, coco_label_map(cfg.model.num_classes))
    converted = map_state_dict(fam, state, model.state_dict(), str(src))
    model.load_state_dict(converted, strict=True)
    model.save(out)
    return Path(out)
