"""Drawing primitives for the synthetic detection dataset: shape masks, textured backgrounds, clutter.

Everything here is a pure function of its arguments and a ``numpy.random.Generator`` so that the scene
generator in :mod:`matchdetr.data.synthetic` is deterministic. Images are float32 ``(H, W, 3)`` arrays in
[0, 255] until they are written; masks are bool ``(h, w)`` arrays over a local crop with an integer offset.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

# A shape is a list of (polygon, fill) parts drawn in order; fill 0 cuts a hole (the ring).
Part = tuple[np.ndarray, int]


def _regular(n: int, radius: float = 1.0, phase: float = math.pi / 2) -> np.ndarray:
    """Vertices ``(n, 2)`` of a regular n-gon; the default phase puts a vertex at the top."""
    t = phase + 2 * math.pi * np.arange(n) / n
    return radius * np.stack([np.cos(t), -np.sin(t)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return _regular(2 * points) * radii[:, None]


def _cross(half_width: float = 0.3) -> np.ndarray:
    w, l = half_width, 1.0
    return np.array([[-w, -l], [w, -l], [w, -w], [l, -w], [l, w], [w, w],
                     [w, l], [-w, l], [-w, w], [-l, w], [-l, -w], [-w, -w]])


def _arrow() -> np.ndarray:
    return np.array([[-1.0, -0.22], [0.15, -0.22], [0.15, -0.6], [1.0, 0.0],
                     [0.15, 0.6], [0.15, 0.22], [-1.0, 0.22]])


def _semicircle(n: int = 24) -> np.ndarray:
    t = np.linspace(0.0, math.pi, n)
    return np.stack([np.cos(t), -np.sin(t)], axis=1)


def _normalise(parts: list[Part]) -> list[Part]:
    """Centre the outline on its bounding box and scale it into the unit circle, so ``size`` below means the
    same thing (diameter of the enclosing circle) for every class."""
    outer = parts[0][0]
    centre = (outer.min(0) + outer.max(0)) / 2
    radius = np.linalg.norm(outer - centre, axis=1).max()
    return [((poly - centre) / radius, fill) for poly, fill in parts]


# Ten classes that differ only in geometry. The diamond is a rhombus with unequal diagonals (0.6:1) and the
# aspect distortion is kept mild (<= 4:3, so diagonal ratios stay in 0.45..0.8): a distorted diamond never
# becomes a rotated square (or vice versa) and a distorted circle stays a round blob, not a new class.
SHAPES: dict[str, list[Part]] = {
    name: _normalise(parts)
    for name, parts in {
        "circle": [(_regular(40), 1)],
        "square": [(_regular(4, phase=math.pi / 4), 1)],
        "triangle": [(_regular(3), 1)],
        "star": [(_star(), 1)],
        "hexagon": [(_regular(6), 1)],
        "cross": [(_cross(), 1)],
        "ring": [(_regular(40), 1), (_regular(40, radius=0.55), 0)],
        "diamond": [(np.array([[0.0, -1.0], [0.6, 0.0], [0.0, 1.0], [-0.6, 0.0]]), 1)],
        "arrow": [(_arrow(), 1)],
        "semicircle": [(_semicircle(), 1)],
    }.items()
}
MAX_ASPECT = 4 / 3  # aspect distortion is log-uniform in [1 / MAX_ASPECT, MAX_ASPECT]


def _polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


# Shape area as a fraction of size**2 (size = enclosing diameter = 2 in unit coordinates). The generator
# draws sqrt(area) rather than size, so every class has the same area distribution: area is not a class cue.
FILL: dict[str, float] = {name: sum(_polygon_area(p) * (1 if f else -1) for p, f in parts) / 4
                          for name, parts in SHAPES.items()}


def render_shape(name: str, size: float, aspect: float, angle: float, cx: float, cy: float
                 ) -> tuple[np.ndarray, int, int]:
    """Rasterise one shape.

    Args:
        name: key of :data:`SHAPES`.
        size: diameter in pixels of the circle enclosing the undistorted shape.
        aspect: width / height ratio imposed in the shape's own frame (before rotation): x is stretched by
            ``sqrt(aspect)`` and y by ``1 / sqrt(aspect)``, so area is preserved and right angles stay right.
        angle: rotation in radians.
        cx, cy: centre in image pixel coordinates (may lie outside the image).
    Returns:
        ``(mask, x0, y0)``: bool mask ``(h, w)`` of the whole, unclipped shape whose top-left pixel sits at
        image column ``x0``, row ``y0``.
    """
    cos, sin = math.cos(angle), math.sin(angle)
    rot = np.array([[cos, -sin], [sin, cos]]) * (size / 2)
    scale = np.array([math.sqrt(aspect), 1.0 / math.sqrt(aspect)])
    polys = [(poly * scale @ rot.T + (cx, cy), fill) for poly, fill in SHAPES[name]]
    lo = np.floor(polys[0][0].min(0)).astype(int)
    hi = np.ceil(polys[0][0].max(0)).astype(int)
    canvas = Image.new("L", tuple(int(v) for v in hi - lo + 1), 0)
    draw = ImageDraw.Draw(canvas)
    for poly, fill in polys:
        # PIL samples pixel centres at integer coordinates, hence the -0.5 shift from continuous coords.
        draw.polygon([tuple(p) for p in (poly - lo - 0.5).tolist()], fill=fill)
    return np.asarray(canvas, dtype=bool), int(lo[0]), int(lo[1])


def _upsample(grid: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear upsampling of ``grid`` ``(gh, gw, ...)`` to ``(h, w, ...)`` (numpy only, no cv2)."""
    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.linspace(0, n_in - 1, n_out)
        i0 = np.minimum(pos.astype(int), n_in - 2)
        return i0, i0 + 1, (pos - i0).astype(np.float32)

    y0, y1, wy = axis(grid.shape[0], h)
    x0, x1, wx = axis(grid.shape[1], w)
    extra = (None,) * (grid.ndim - 2)
    rows = grid[y0] * (1 - wy)[(slice(None), None) + extra] + grid[y1] * wy[(slice(None), None) + extra]
    return rows[:, x0] * (1 - wx)[(None, slice(None)) + extra] + rows[:, x1] * wx[(None, slice(None)) + extra]


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A textured background ``(h, w, 3)`` float32: colour gradient + low-frequency mottling + grain +
    amorphous stains + optional stripes. None of it has sharp straight or round outlines, so it cannot be
    confused with a shape; it only makes "foreground = anything not flat" useless as a cue."""
    # Everything but the stripes is smooth, so it is built on a 4x coarser grid and upsampled once (the
    # gradient is linear, so bilinear upsampling reproduces it exactly); this halves generation time.
    gh, gw = h // 4 + 2, w // 4 + 2
    yy, xx = np.arange(gh, dtype=np.float32)[:, None], np.arange(gw, dtype=np.float32)[None, :]
    theta = rng.uniform(0, 2 * math.pi)
    t = xx * math.cos(theta) + yy * math.sin(theta)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)  # (gh, gw) ramp in [0, 1]
    c0 = rng.uniform(20, 235, 3).astype(np.float32)
    c1 = np.clip(c0 + rng.normal(0, 50, 3), 0, 255).astype(np.float32)
    low = c0 + (c1 - c0) * t[..., None]
    mottle = rng.normal(0, rng.uniform(4, 25), (*rng.integers(3, 10, size=2), 3)).astype(np.float32)
    low += _upsample(mottle, gh, gw)
    if rng.random() < 0.35:  # grain: noise at the coarse-grid frequency
        low += rng.normal(0, rng.uniform(5, 15), (gh, gw, 1)).astype(np.float32)
    for _ in range(rng.integers(0, 4)):  # stains: soft-edged irregular blobs from a thresholded noise field
        field = _upsample(rng.normal(0, 1, (rng.integers(3, 7), rng.integers(3, 7))).astype(np.float32), gh, gw)
        alpha = 1 / (1 + np.exp((rng.uniform(0.8, 1.6) - field) * 4))
        low += alpha[..., None] * rng.normal(0, 35, 3).astype(np.float32)
    img = _upsample(low, h, w)
    if rng.random() < 0.35:  # stripes at a random angle and period
        phi, period = rng.uniform(0, math.pi), rng.uniform(4, 20)
        yy, xx = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]
        wave = np.sin((xx * math.cos(phi) + yy * math.sin(phi)) * (2 * math.pi / period))
        img += (rng.uniform(5, 18) * wave)[..., None]
    return img


def draw_clutter(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Thin straight lines and random-walk scribbles ``(H, W, 3)`` -> ``(H, W, 3)``: open strokes, never
    filled outlines, so they are clearly not objects but still produce edges a detector must ignore."""
    h, w = img.shape[:2]
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for _ in range(rng.integers(0, 7)):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        width = int(rng.integers(1, 3))
        if rng.random() < 0.5:
            pts = rng.uniform(0, 1, (2, 2)) * (w, h)
        else:  # a scribble: random walk with momentum, so it curves rather than zig-zags into a polygon
            steps = rng.integers(4, 12)
            heading = rng.uniform(0, 2 * math.pi) + np.cumsum(rng.normal(0, 0.5, steps))
            step = rng.uniform(4, 15)
            start = rng.uniform(0, 1, 2) * (w, h)
            pts = start + np.cumsum(np.stack([np.cos(heading), np.sin(heading)], 1) * step, 0)
        draw.line([tuple(p) for p in pts.tolist()], fill=colour, width=width)
    return np.asarray(pil, dtype=np.float32).copy()
