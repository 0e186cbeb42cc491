"""The size an image is resized to: DETR's rule, bounded whatever the aspect ratio. No torch here: the ONNX
runner (``inference/onnx_predict.py``) sizes and pads its inputs with the same functions as the data pipeline."""

from __future__ import annotations


def resized_hw(size_wh: tuple[int, int], size: int, max_size: int | None = None) -> tuple[int, int]:
    """DETR's ``get_size_with_aspect_ratio``: shorter side -> ``size``, longer side capped at ``max_size``.

    Returns ``(h, w)``. Kept line-for-line with DETR (``int`` truncation and its rounding included) so image sizes
    match its, with one exception: where the cap would leave the shorter side under one pixel (a 20000 x 1 or
    20000 x 2 image), DETR's formula keeps the longer side as it is, and one such image pads its whole batch to
    20000 px; here it becomes 1 x ``max_size``. Elsewhere the longer side stays within ``2 * max_size`` (DETR's
    rounding of the shorter side overshoots the cap by at most half a pixel of it, scaled).
    """
    w, h = size_wh
    if max_size is not None:
        lo, hi = float(min(w, h)), float(max(w, h))
        if hi / lo * size > max_size:
            size = int(round(max_size * lo / hi))
            if size < 1:  # an absurd aspect ratio: the shorter side at its floor, the longer one at the cap
                return (1, max_size) if w >= h else (max_size, 1)
    if (w <= h and w == size) or (h <= w and h == size):
        return h, w
    if w < h:
        return max(int(size * h / w), 1), size
    return size, max(int(size * w / h), 1)


# The canvas of an image at evaluation and prediction: its size rounded up to a multiple of this (the largest
# stride of the backbones). 32 groups the synthetic val split's 250 sizes into 11 canvases at 5.6 % more pixels.
# Only images of one canvas share a batch, so an image's answer does not depend on its neighbours.
CANVAS_MULTIPLE = 32


def canvas(size: tuple[int, int], multiple: int = CANVAS_MULTIPLE) -> tuple[int, int]:
    """``(h, w)`` rounded up to multiples of ``multiple``: the padded size an image is evaluated at."""
    return -(-int(size[0]) // multiple) * multiple, -(-int(size[1]) // multiple) * multiple
