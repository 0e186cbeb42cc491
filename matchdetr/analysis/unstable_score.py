"""``matchdetr analyze unstable``: the unstable score (``engine/unstable_score.py``) of a saved checkpoint."""

from __future__ import annotations

from typing import Any

from ..engine.unstable_score import UnstableScore, unstable_score


def analyze_checkpoint(checkpoint: str, data: Any, split: str = "val", num_images: int = 20,
                       device: str = "auto") -> UnstableScore:
    """Load a checkpoint (file or run directory) and score it on a COCO-format split."""
    from .. import api
    from ..data.coco import resolve_split
    from ..engine.distributed import init_from_env
    from ..compose import build_matcher

    dev = init_from_env(device)
    model = api.load(checkpoint, map_location=dev)
    dataset = api.eval_split(model, resolve_split(data, split, None, None))
    return unstable_score(model.module, dataset, build_matcher(model.config.model), dev, num_images)
