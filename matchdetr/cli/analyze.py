"""``matchdetr analyze unstable | errors``: diagnostics of a trained model."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import DEVICE_HELP
from .errors import float_in, nonneg_int, positive_int
from .paths import checkpoint_path, dataset_path, output_dir


def add_analyze(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="diagnostics of a trained model (unstable score of matching, error breakdown)",
                       description="Diagnostics of a checkpoint on a dataset split: `unstable` measures how often "
                                   "the matched query of a ground truth changes from one decoder layer to the next "
                                   "(Stable-DINO sec 2.4.3); `errors` splits the ground truths into found-and-named, "
                                   "found-but-misnamed and not found, by object size.")
    asub = p.add_subparsers(dest="analysis", required=True)

    def analysis(name: str, help: str, description: str, writes: tuple[str, ...]) -> argparse.ArgumentParser:
        files = " / ".join(writes)
        a = asub.add_parser(name, help=help, description=f"{description} Writes {files} to --out.")
        a.add_argument("--checkpoint", type=checkpoint_path, required=True, help="checkpoint file or run directory")
        a.add_argument("--data", type=dataset_path, required=True, help="dataset folder: COCO, YOLO (or its data.yaml) or Pascal VOC")
        a.add_argument("--split", default="val", help="which split of --data")
        a.add_argument("--out", type=output_dir(*writes), help=f"folder for {files} (default: next to the checkpoint)")
        a.add_argument("--device", default="auto", help=DEVICE_HELP)
        return a

    u = analysis("unstable", "per-layer unstable score (Stable-DINO sec 2.4.3) of a checkpoint",
                 "Match every decoder layer (and DINO's encoder proposals) to the ground truth and report, per layer, "
                 "the percentage of GTs whose matched query changed from the previous layer.",
                 ("unstable.csv", "unstable.json"))
    u.add_argument("--images", type=positive_int, default=20, help="first N images of the split (paper: 20)")
    u.set_defaults(func=cmd_analyze_unstable)
    e = analysis("errors", "found-but-misnamed vs not-found ground truths, by object size",
                 "Predict a split and report, per COCO area range, the percentage of ground-truth boxes some top-k "
                 "detection of any class overlaps at IoU >= --iou (found), and of those, the percentage whose "
                 "best-scored overlapping detection has the right class (named).", ("errors.json",))
    e.add_argument("--iou", type=float_in(0.0, 1.0, lo_open=True), default=0.5,
                   help="IoU at which a detection finds a ground-truth box, in (0, 1]")
    e.add_argument("--workers", type=nonneg_int, default=2, help="DataLoader worker processes")
    e.set_defaults(func=cmd_analyze_errors)


def _analysis_out(a: argparse.Namespace, name: str) -> Path:
    ck = Path(a.checkpoint)
    return Path(a.out) if a.out else (ck if ck.is_dir() else ck.parent) / name


def cmd_analyze_unstable(a: argparse.Namespace) -> int:
    from ..analysis.unstable_score import analyze_checkpoint

    score = analyze_checkpoint(a.checkpoint, a.data, a.split, a.images, a.device)
    print(score.table())
    for path in score.write(_analysis_out(a, "unstable")):
        print(f"wrote {path}")
    return 0


def cmd_analyze_errors(a: argparse.Namespace) -> int:
    from ..analysis.errors import analyze_checkpoint

    result = analyze_checkpoint(a.checkpoint, a.data, a.split, a.iou, a.device, num_workers=a.workers)
    print(result.table())
    print(f"wrote {result.write(_analysis_out(a, 'errors'))}")
    return 0
