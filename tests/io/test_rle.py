"""io/rle.py: COCO compressed RLE in numpy, string for string what the COCO mask API writes."""

from __future__ import annotations

import numpy as np
import pytest

from matchdetr.io.rle import masks_to_rle


@pytest.mark.parametrize("shape", [(3, 1, 1), (4, 7, 5), (2, 40, 33), (1, 300, 200), (0, 4, 4)])
@pytest.mark.parametrize("fill", [0.0, 0.02, 0.5, 0.98, 1.0])
def test_equals_the_coco_mask_api(shape, fill):
    from faster_coco_eval.core import mask as mask_api

    masks = np.random.default_rng(int(fill * 100) + shape[1]).random(shape) < fill
    ref = [] if shape[0] == 0 else [
        {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}
        for r in mask_api.encode(np.asfortranarray(masks.astype(np.uint8).transpose(1, 2, 0)))]
    assert masks_to_rle(masks) == ref


def test_blobs_and_long_runs_decode_back():
    from faster_coco_eval.core import mask as mask_api

    masks = np.zeros((2, 1200, 900), dtype=bool)
    masks[0, 100:700, 50:800] = True  # long runs: counts of several 5-bit groups
    masks[1, 0, 0] = masks[1, -1, -1] = True  # set first pixel: counts start with 0
    for mask, rle in zip(masks, masks_to_rle(masks)):
        assert np.array_equal(mask_api.decode({"size": rle["size"], "counts": rle["counts"].encode()}), mask)
