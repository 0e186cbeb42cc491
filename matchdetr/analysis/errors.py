"""Where the AP goes: ground truths a detector finds but names wrongly, against those it does not find at all.

COCO AP folds two failures into one number. For each ground-truth box this looks at the detector's top
``per_image`` detections of its image, of any class:

- **found**: at least one of them overlaps the box at IoU >= ``iou``;
- **named** (of the found ones): the highest-scored of those overlapping detections has the box's class.

A detector that is learning to localise but not yet to classify has many found and few named boxes; with
``K`` classes and uninformative scores, named sits near ``100 / K`` percent ("chance" in the table). This is the
diagnosis behind the tiny presets' low AP in docs/benchmarks.md. Crowd boxes are skipped. Sizes are COCO's
area ranges (annotation ``area``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..boxes import box_iou, xywh_to_xyxy

if TYPE_CHECKING:
    from ..data.coco import CocoDetection
    from ..model import Model

AREAS = {"all": (0.0, float("inf")), "small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2),
         "large": (96.0**2, float("inf"))}


@dataclass
class ErrorRow:
    area: str
    num_gt: int
    found: float  # percent of the GTs
    named: float  # percent of the found GTs


@dataclass
class ErrorBreakdown:
    rows: list[ErrorRow]
    iou: float
    per_image: int
    num_classes: int
    images: int
    chance: float = field(init=False)  # percent named by a detector whose class scores carry no information

    def __post_init__(self) -> None:
        self.chance = 100.0 / max(self.num_classes, 1)

    def table(self) -> str:
        lines = [f"found: a top-{self.per_image} detection of any class at IoU >= {self.iou}; named: the best-scored "
                 f"of those has the right class (chance {self.chance:.0f} % with {self.num_classes} classes); "
                 f"{self.images} images",
                 "", "| area | GTs | found % | named % of found |", "|---|---|---|---|"]
        lines += [f"| {r.area} | {r.num_gt} | {r.found:.1f} | {r.named:.1f} |" for r in self.rows]
        return "\n".join(lines)

    def write(self, out: Path) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        path = out / "errors.json"
        path.write_text(json.dumps(asdict(self), indent=2))
        return path


def error_breakdown(results: list[dict[str, Any]], coco_gt: dict[str, Any], iou: float = 0.5,
                    per_image: int = 100, image_ids: list[int] | None = None) -> ErrorBreakdown:
    """``results``: COCO detections (``image_id``, ``category_id``, ``bbox`` xywh, ``score``); ``coco_gt``: the
    split's COCO dict. Only images listed in ``coco_gt`` count, and of those only ``image_ids`` when given (the
    images a dataset kept, as COCO evaluation scores them)."""
    if not 0.0 < iou <= 1.0 or per_image < 1:
        raise ValueError(f"error breakdown needs 0 < iou <= 1 and per_image >= 1, got {iou} and {per_image}")
    by_image: dict[int, list[dict[str, Any]]] = {}
    for det in results:
        by_image.setdefault(int(det["image_id"]), []).append(det)
    gts: dict[int, list[dict[str, Any]]] = {}
    for ann in coco_gt["annotations"]:
        if not ann.get("iscrowd", 0):
            gts.setdefault(int(ann["image_id"]), []).append(ann)
    counts = {name: [0, 0, 0] for name in AREAS}  # GTs, found, named
    wanted = None if image_ids is None else {int(i) for i in image_ids}
    images = [im for im in coco_gt["images"] if wanted is None or int(im["id"]) in wanted]
    for image in images:
        anns = gts.get(int(image["id"]), [])
        if not anns:
            continue
        dets = sorted(by_image.get(int(image["id"]), []), key=lambda d: -d["score"])[:per_image]
        found, named = torch.zeros(len(anns), dtype=torch.bool), torch.zeros(len(anns), dtype=torch.bool)
        if dets:
            overlap = box_iou(xywh_to_xyxy(torch.tensor([a["bbox"] for a in anns], dtype=torch.float64)),
                              xywh_to_xyxy(torch.tensor([d["bbox"] for d in dets], dtype=torch.float64))) >= iou
            found = overlap.any(1)
            # dets are sorted by score, so the first overlapping one is the best-scored
            best = overlap.to(torch.uint8).argmax(1)
            classes = torch.tensor([d["category_id"] for d in dets])[best]
            named = found & (classes == torch.tensor([a["category_id"] for a in anns]))
        for k, ann in enumerate(anns):
            for name, (lo, hi) in AREAS.items():
                if lo <= float(ann["area"]) < hi:
                    c = counts[name]
                    c[0], c[1], c[2] = c[0] + 1, c[1] + int(found[k]), c[2] + int(named[k])
    rows = [ErrorRow(name, n, 100.0 * f / max(n, 1), 100.0 * m / max(f, 1)) for name, (n, f, m) in counts.items()]
    return ErrorBreakdown(rows, iou, per_image, len(coco_gt.get("categories", [])), len(images))


# Images per batch when predicting for a breakdown (each image padded to its own canvas, engine/evaluate.py: the
# breakdown does not depend on it).
PREDICT_BATCH = 8


def model_error_breakdown(model: Model, dataset: CocoDetection, device: torch.device, iou: float = 0.5,
                          batch_size: int = PREDICT_BATCH, num_workers: int = 2,
                          progress: bool = True) -> ErrorBreakdown:
    """Predict ``dataset`` (as :func:`matchdetr.api.eval_split` makes it) with ``model`` and break its errors
    down over the model's top-k detections per image."""
    from ..engine.evaluate import make_eval_loader, predict_dataset

    results = predict_dataset(model.module, make_eval_loader(dataset, batch_size, num_workers), device, progress=progress)
    coco_gt = dataset.coco_gt if isinstance(dataset.coco_gt, dict) else json.loads(Path(dataset.coco_gt).read_text())
    return error_breakdown(results, coco_gt, iou, model.config.model.postprocess.topk, image_ids=dataset.image_ids)


def analyze_checkpoint(checkpoint: str, data: Any, split: str = "val", iou: float = 0.5, device: str = "auto",
                       num_workers: int = 2) -> ErrorBreakdown:
    """Load a checkpoint (file or run directory) and break its errors down on ``split`` of the dataset folder
    ``data``."""
    from .. import api
    from ..data.coco import resolve_split
    from ..engine.distributed import init_from_env

    dev = init_from_env(device)
    model = api.load(checkpoint, map_location=dev)
    dataset = api.eval_split(model, resolve_split(data, split, None, None))
    return model_error_breakdown(model, dataset, dev, iou, num_workers=num_workers)
