"""Configs saved before the per-component schema (checkpoint format 1, ``config.json`` of older runs) read as
today's: the flat sections (``model.loss.psl_f1``, ``model.sam.*``, ``model.mask.*``, strings naming a kind,
``-1`` / ``0`` / ``""`` meaning "none") become the component configs that replaced them. A config in today's form
(``model.arch`` a mapping) is returned unchanged. Missing keys take the defaults the old schema had.
"""

from __future__ import annotations

import copy
from typing import Any

# The old schema's defaults, for configs saved by versions that predate a key.
_OLD = {
    "backbone": {"name": "resnet50", "width": 64, "frozen_stages": 2, "norm": "frozen_bn", "dilation": False,
                 "return_levels": [5], "weights": "", "pretrain_epochs": 0, "pretrain_size": 64},
    "transformer": {"box_refine": False, "two_stage": False, "look_forward_twice": False},
    "denoising": {"style": "none", "dn_number": 100, "groups": 5, "label_noise": 0.5, "box_noise": 1.0},
    "hybrid": {"num_one2many": 0, "k": 6, "weight": 1.0},
    "sam": {"resample": "keypoints_M", "reweight": True, "search_range": "box", "smca": False, "multiscale": False,
            "roi_size": 7, "sampling_ratio": -1, "encoder_ffn_dim": 1024, "group_norm": False},
    "matcher": {"cost_class": 2.0, "cost_bbox": 5.0, "cost_giou": 2.0, "focal_alpha": 0.25, "focal_gamma": 2.0,
                "class_cost": "focal", "pmc_power": 0.5, "cost_mask": 0.0, "cost_dice": 0.0, "mask_points": 12544},
    "loss": {"class_weight": 2.0, "bbox_weight": 5.0, "giou_weight": 2.0, "focal_alpha": 0.25, "focal_gamma": 2.0,
             "aux_loss": True, "class_loss": "focal", "psl_f1": "s^2", "psl_rescale": "one", "psl_denoising": True,
             "vfl_alpha": 0.75, "vfl_gamma": 2.0, "qfl_beta": 2.0, "ia_bce_alpha": 0.25, "ia_bce_gamma": 2.0,
             "mal_gamma": 1.5, "mal_alpha": -1.0, "dn_class_weight": -1.0, "mask_weight": 0.0, "dice_weight": 0.0,
             "mask_points": 12544, "mask_oversample_ratio": 3.0, "mask_importance_ratio": 0.75},
    "mask": {"mask_dim": 256, "encoder_ffn_dim": 1024, "box_init": "bitmask", "initial_pred": True},
    "postprocess": {"topk": 100, "nms_iou": 0.0},
}
# arch -> the Deformable-DETR convention of positions from pixel centres (-0.5) or DETR's from pixel ends (0)
_OFFSETS = {"detr": 0.0, "smca_detr": 0.0}


# Keys only the pre-component schema had, per model section (a partial config file without `arch` is flat when
# it names one of them).
_FLAT_ONLY = {"": {"sam", "mask"}, "backbone": {"name"}, "transformer": {"box_refine", "two_stage", "look_forward_twice"},
              "denoising": {"style"}, "hybrid": {"num_one2many"},
              "matcher": {"focal_alpha", "focal_gamma", "pmc_power", "cost_mask", "cost_dice", "mask_points"},
              "loss": {"focal_alpha", "focal_gamma", "psl_f1", "psl_rescale", "psl_denoising", "vfl_alpha", "vfl_gamma",
                       "qfl_beta", "ia_bce_alpha", "ia_bce_gamma", "mal_gamma", "mal_alpha", "mask_weight",
                       "dice_weight", "mask_points", "mask_oversample_ratio", "mask_importance_ratio"}}


def is_flat(data: dict[str, Any]) -> bool:
    """Whether ``data`` (a whole config's dict, or a file's part of one) is in the pre-component form."""
    model = data.get("model")
    if not isinstance(model, dict):
        return False
    if "arch" in model:
        return isinstance(model["arch"], str)
    sections = {"": model, **{k: v for k, v in model.items() if isinstance(v, dict)}}
    return any(set(sections.get(s, {})) & keys for s, keys in _FLAT_ONLY.items()) or \
        isinstance(model.get("memory_fusion"), str) and model["memory_fusion"] == "none"


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Today's form of a whole config dict (unchanged when it is in today's form already)."""
    if not isinstance(data, dict) or not is_flat(data):
        return data
    out = copy.deepcopy(data)
    out["model"] = _model(out["model"])
    if isinstance(out.get("train"), dict):
        _train(out["train"])
    return out


def _section(model: dict[str, Any], name: str) -> dict[str, Any]:
    return {**_OLD[name], **(model.pop(name, None) or {})}


def _model(m: dict[str, Any]) -> dict[str, Any]:
    arch = m.pop("arch", "detr")
    t = m.setdefault("transformer", {})
    tr = {**_OLD["transformer"], **{k: t.pop(k) for k in list(t) if k in _OLD["transformer"]}}
    sam, mask = _section(m, "sam"), _section(m, "mask")
    m["arch"] = _arch(arch, tr, sam, mask)
    m["backbone"] = _backbone(_section(m, "backbone"))
    d = _section(m, "denoising")
    style = d.pop("style")
    keep = {"dn_detr": ("groups",), "dino": ("dn_number",), "mask_dino": ("dn_number",)}
    m["denoising"] = None if style == "none" else {
        "kind": style, **{k: d[k] for k in keep.get(style, ())}, "label_noise": d["label_noise"],
        "box_noise": d["box_noise"]}
    h = _section(m, "hybrid")
    m["hybrid"] = None if h["num_one2many"] <= 0 else {"kind": "one_to_many", "num_queries": h["num_one2many"],
                                                       "k": h["k"], "weight": h["weight"]}
    fusion = m.pop("memory_fusion", "none")
    m["memory_fusion"] = None if fusion == "none" else {"kind": fusion}
    m["matcher"] = _matcher(_section(m, "matcher"))
    m["loss"] = _loss(_section(m, "loss"))
    post = _section(m, "postprocess")
    m["postprocess"] = {"topk": post["topk"], "nms_iou": post["nms_iou"] if post["nms_iou"] > 0 else None}
    return m


def _arch(arch: str, t: dict[str, Any], sam: dict[str, Any], mask: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": arch, "pos_offset": _OFFSETS.get(arch, -0.5)}
    if arch == "deformable_detr":
        out.update(box_refine=t["box_refine"], two_stage=t["two_stage"])
    elif arch in ("dab_deformable_detr", "dino"):
        out.update(look_forward_twice=t["look_forward_twice"])
    elif arch == "mask_dino":  # trained with Deformable-DETR's offset and the padding masked out
        out.update(mask, look_forward_twice=t["look_forward_twice"], size_divisibility=1, padding_is_content=False)
    elif arch == "sam_detr":
        out.update(sam, sampling_ratio=sam["sampling_ratio"] if sam["sampling_ratio"] > 0 else None)
    return out


def _backbone(b: dict[str, Any]) -> dict[str, Any]:
    name, weights = str(b["name"]), b["weights"] or None
    common = {"frozen_stages": b["frozen_stages"], "norm": b["norm"], "return_levels": b["return_levels"],
              "weights": weights}
    if name.startswith("efficientnet-lite"):
        return {"kind": "efficientnet_lite", "variant": int(name[len("efficientnet-lite"):]), **common}
    depth = int(name[len("resnet"):]) if name.startswith("resnet") and name[6:].isdigit() else name
    return {"kind": "resnet", "depth": depth, "width": b["width"], "dilation": b["dilation"], **common,
            "pretrain_epochs": b["pretrain_epochs"], "pretrain_size": b["pretrain_size"]}


def _matcher(m: dict[str, Any]) -> dict[str, Any]:
    cost: dict[str, Any] = {"kind": m["class_cost"], "alpha": m["focal_alpha"], "gamma": m["focal_gamma"]}
    if m["class_cost"] == "position_modulated":
        cost["power"] = m["pmc_power"]
    mask = None if not (m["cost_mask"] or m["cost_dice"]) else {
        "kind": "point_sampled", "mask_weight": m["cost_mask"], "dice_weight": m["cost_dice"], "points": m["mask_points"]}
    return {"class_cost": cost, "cost_class": m["cost_class"], "cost_bbox": m["cost_bbox"], "cost_giou": m["cost_giou"],
            "mask_cost": mask}


def _class_loss(l: dict[str, Any]) -> dict[str, Any]:
    kind = l["class_loss"]
    params = {
        "focal": {"alpha": l["focal_alpha"], "gamma": l["focal_gamma"]},
        "position_supervised": {"f1": l["psl_f1"], "rescale": l["psl_rescale"], "alpha": l["focal_alpha"],
                                "gamma": l["focal_gamma"]},
        "varifocal": {"alpha": l["vfl_alpha"], "gamma": l["vfl_gamma"]},
        "quality_focal": {"beta": l["qfl_beta"]},
        "ia_bce": {"alpha": l["ia_bce_alpha"], "gamma": l["ia_bce_gamma"]},
        "matchability_aware": {"gamma": l["mal_gamma"], "alpha": None if l["mal_alpha"] < 0 else l["mal_alpha"]},
    }
    return {"kind": kind, **params.get(kind, {})}


def _loss(l: dict[str, Any]) -> dict[str, Any]:
    dn = None
    if l["class_loss"] == "position_supervised" and not l["psl_denoising"]:
        dn = {"kind": "focal", "alpha": l["focal_alpha"], "gamma": l["focal_gamma"]}
    mask = None if not (l["mask_weight"] or l["dice_weight"]) else {
        "kind": "point_sampled", "mask_weight": l["mask_weight"], "dice_weight": l["dice_weight"],
        "points": l["mask_points"], "oversample_ratio": l["mask_oversample_ratio"],
        "importance_ratio": l["mask_importance_ratio"]}
    return {"class_loss": _class_loss(l), "dn_class_loss": dn, "class_weight": l["class_weight"],
            "bbox_weight": l["bbox_weight"], "giou_weight": l["giou_weight"],
            "dn_class_weight": None if l["dn_class_weight"] < 0 else l["dn_class_weight"], "aux_loss": l["aux_loss"],
            "mask": mask}


def _train(t: dict[str, Any]) -> None:
    """In place: ``0`` / ``""`` meaning "none" become None."""
    for key in ("iters", "eval_every", "unstable_every", "clip_max_norm"):
        if key in t and not t[key]:
            t[key] = None
    if "init" in t and not t["init"]:
        t["init"] = None
    if "lr_drop" in t and not t["lr_drop"]:  # the old schedule read a drop at 0 as no drop
        t["lr_drop"] = None
