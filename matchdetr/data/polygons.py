"""Polygons bounded by their image, so that rasterising one costs memory in proportion to the image.

COCO's rasteriser (``rleFrPoly``, the same C in pycocotools and faster-coco-eval) draws every edge at 5x
resolution before it keeps the pixels inside the image: its memory grows with the polygon's extent, not the
image's, and a coordinate of 1e9 overflows its integers and ends in ``std::bad_alloc``. A polygon reaching further
than :data:`MARGIN` image widths or heights outside its image is therefore clipped to the image (Sutherland and
Hodgman's algorithm, exact for a convex window); one within the margin is left exactly as it is, so that the masks
of real annotations (a vertex a pixel or two outside, as COCO has) are rasterised bit for bit as pycocotools
rasterises them. No torch here: the scoring of masks uses it too.
"""

from __future__ import annotations

from typing import Sequence

MARGIN = 1.0  # how far outside its image, in image widths / heights, a polygon may reach before it is clipped


def reaches_far(xy: Sequence[float], width: float, height: float) -> bool:
    """Whether the polygon ``[x1, y1, x2, y2, ...]`` reaches beyond :data:`MARGIN` around the image."""
    xs, ys = xy[0::2], xy[1::2]
    return (min(xs) < -MARGIN * width or max(xs) > (1 + MARGIN) * width
            or min(ys) < -MARGIN * height or max(ys) > (1 + MARGIN) * height)


def clip_polygon(xy: Sequence[float], width: float, height: float) -> list[float]:
    """The part of the closed polygon ``[x1, y1, x2, y2, ...]`` inside ``[0, width] x [0, height]``, as a flat list
    (empty when under 3 points are left: nothing of it lies inside). Finite coordinates only."""
    points = [(float(x), float(y)) for x, y in zip(xy[0::2], xy[1::2])]
    for axis, bound, keep_below in ((0, 0.0, False), (0, float(width), True), (1, 0.0, False),
                                    (1, float(height), True)):
        points = _clip_half_plane(points, axis, bound, keep_below)
        if not points:
            break
    return [v for p in points for v in p] if len(points) >= 3 else []


def _clip_half_plane(points: list[tuple[float, float]], axis: int, bound: float, keep_below: bool
                     ) -> list[tuple[float, float]]:
    """One Sutherland-Hodgman step: the polygon cut by the line ``point[axis] == bound``."""
    inside = (lambda p: p[axis] <= bound) if keep_below else (lambda p: p[axis] >= bound)
    out: list[tuple[float, float]] = []
    for i, cur in enumerate(points):
        prev = points[i - 1]
        if inside(cur) != inside(prev):  # the edge crosses the line: keep the crossing
            t = (bound - prev[axis]) / (cur[axis] - prev[axis])
            other = prev[1 - axis] + t * (cur[1 - axis] - prev[1 - axis])
            out.append((bound, other) if axis == 0 else (other, bound))
        if inside(cur):
            out.append(cur)
    return out


def bounded_parts(parts: Sequence[Sequence[float]], width: float, height: float) -> list[list[float]] | None:
    """The parts of a polygon segmentation with those that reach far outside the image clipped to it (parts left
    empty dropped), or None when no part needed it (the caller keeps its own object)."""
    if not any(len(p) >= 6 and reaches_far(p, width, height) for p in parts):
        return None
    out = [clip_polygon(p, width, height) if len(p) >= 6 and reaches_far(p, width, height) else list(p)
           for p in parts]
    return [p for p in out if p]
