"""The unstable score (Stable-DINO, Liu et al. 2023, sec 2.4.3, fig. 3): how often matching changes between
consecutive decoder layers.

Each layer's predictions are matched to the ground truth on their own; for consecutive layers (l-1, l) we count
the GTs whose matched query differs. ``score(l) = 100 * changed / num_gt``, GT-weighted over the images. Layer 1
compares the encoder's query-aligned proposals (DINO's selected top-k) with decoder layer 1; models without
such proposals start at layer 2. The paper evaluates a checkpoint after 5000 steps on the first 20 val images.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from ..data.collate import collate
from ..matching.hungarian import HungarianMatcher
from ..models.plugins.mask_head import every_layer_masks
from ..structures import DetectorOutput, Prediction, Target


@dataclass
class UnstableScore:
    """layers: decoder layer numbers l (1-based) scored against l-1 (0 = the encoder proposals);
    scores: percent per layer; changed: GTs re-assigned per layer; num_gt: GTs evaluated; images: count."""

    layers: list[int]
    scores: list[float]
    changed: list[int]
    num_gt: int
    images: int

    def table(self) -> str:
        rows = [f"{'layer':>6} {'pair':>10} {'unstable %':>11}"]
        rows += [f"{l:>6} {f'{l - 1}->{l}':>10} {s:>11.2f}" for l, s in zip(self.layers, self.scores)]
        return "\n".join(rows + [f"({self.num_gt} GTs in {self.images} images)"])

    def metrics(self) -> dict[str, float]:
        """Flat ``{"unstable_l<l>": score}`` for metrics.jsonl / TensorBoard."""
        return {f"unstable_l{l}": s for l, s in zip(self.layers, self.scores)}

    def write(self, out_dir: str | Path) -> list[Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "unstable.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["layer", "unstable_score", "changed", "num_gt"])
            w.writerows([l, f"{s:.4f}", c, self.num_gt] for l, s, c in zip(self.layers, self.scores, self.changed))
        (out / "unstable.json").write_text(json.dumps(self.__dict__, indent=2))
        return [out / "unstable.csv", out / "unstable.json"]


def layer_predictions(out: DetectorOutput) -> tuple[list[Prediction], int]:
    """The predictions to compare, in order, and the layer number of the first one (0 = encoder)."""
    decoder = list(out.aux) + [out.final]
    q = out.logits.shape[1]
    enc = [s.prediction for s in out.extra
           if s.suffix == "_enc" and not s.class_agnostic and s.prediction.logits.shape[1] == q]
    return (enc[:1] + decoder, 0) if enc else (decoder, 1)


def count_changes(matches: list[list[tuple[Tensor, Tensor]]]) -> list[int]:
    """matches: per layer, per image ``(query_idx, gt_idx)``. Returns per consecutive pair the number of GTs
    whose matched query differs."""
    changed = []
    for prev, cur in zip(matches[:-1], matches[1:]):
        n = 0
        for (q0, g0), (q1, g1) in zip(prev, cur):
            a = dict(zip(g0.tolist(), q0.tolist()))
            b = dict(zip(g1.tolist(), q1.tolist()))
            n += sum(a.get(g) != b.get(g) for g in set(a) | set(b))
        changed.append(n)
    return changed


@torch.no_grad()
def unstable_score(model: torch.nn.Module, dataset: Dataset, matcher: HungarianMatcher, device: torch.device,
                   num_images: int = 20, batch_size: int = 4) -> UnstableScore:
    """Score ``model`` (put in eval mode for the duration) on the first ``num_images`` of ``dataset``.

    An image that could not be decoded (``Target.readable`` False, reported by the dataset) has no boxes, so it
    changes no count; it is left out of ``images``."""
    n = min(num_images, len(dataset))  # type: ignore[arg-type]
    loader = DataLoader(Subset(dataset, range(n)), batch_size=batch_size, collate_fn=collate, num_workers=0)
    was_training = model.training
    model.eval()
    totals: list[int] | None = None
    first, num_gt, unreadable = 1, 0, 0
    try:
        for batch in loader:
            batch = batch.to(device)
            with every_layer_masks(model):  # a mask-matching cost matches each layer's masks, as in training
                out = model(batch.images, batch.pixel_mask)
            preds, first = layer_predictions(out)
            targets: list[Target] = batch.targets
            changed = count_changes([matcher(p, targets) for p in preds])
            totals = changed if totals is None else [a + b for a, b in zip(totals, changed)]
            num_gt += sum(len(t) for t in targets)
            unreadable += sum(not t.readable for t in targets)
    finally:
        model.train(was_training)
    totals = totals or []
    scores = [100.0 * c / max(num_gt, 1) for c in totals]
    return UnstableScore(list(range(first + 1, first + 1 + len(totals))), scores, totals, num_gt, n - unreadable)
