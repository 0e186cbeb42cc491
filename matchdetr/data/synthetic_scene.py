"""One synthetic scene (``synthetic.py`` writes the dataset): a long-tailed number of shapes in groups
(singletons and same-class clusters), log-uniform sizes, placed over a textured background in drawing order,
each labelled by the pixels it still owns after the later shapes covered it.
"""

from __future__ import annotations

import math

import numpy as np

from .shapes import FILL, MAX_ASPECT, SHAPES, background, draw_clutter, render_shape

MIN_VISIBLE_FRACTION = 0.3  # objects hidden or truncated beyond this are not labelled
MIN_VISIBLE_PIXELS = 10     # ... nor are specks too small to show their shape
MIN_SCALE = 5.0             # smallest sqrt(shape area) in pixels (a ~6 px wide shape)
MAX_SCALE = 0.9             # largest sqrt(shape area) as a fraction of the short image side
CLUSTER_PROB = 0.2          # chance that the next group of shapes is a same-class cluster
CLUSTER_SCALE = 0.3         # largest sqrt(area) of a cluster member as a fraction of the short side
_NAMES = list(SHAPES)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, n: int | None = None):
    return np.exp(rng.uniform(math.log(lo), math.log(max(hi, lo)), n))


def _plan(rng: np.random.Generator, h: int, w: int, max_objects: int) -> list[list[dict]]:
    """Object specs (label, size, aspect, angle) in groups, in painting order.

    The count is long-tailed, P(n) ~ 1/n on 1..max_objects. A group is a singleton or, with CLUSTER_PROB, 2-5
    shapes of one class and similar size that will be placed touching. sqrt(area) is log-uniform, so COCO's
    small / medium / large ranges are all well populated; big groups tend to be painted first (with jitter)
    so small shapes are not routinely buried, yet some small ones still end up occluded by big ones.
    """
    counts = np.arange(1, max_objects + 1)
    n, short, groups = int(rng.choice(counts, p=(1 / counts) / (1 / counts).sum())), min(h, w), []
    while (left := n - sum(len(g) for g in groups)) > 0:
        label = int(rng.integers(len(_NAMES)))
        if left >= 2 and rng.random() < CLUSTER_PROB:
            k = int(rng.integers(2, min(5, left) + 1))
            scales = _log_uniform(rng, 2 * MIN_SCALE, CLUSTER_SCALE * short) * rng.uniform(0.85, 1.15, k)
        else:
            scales = _log_uniform(rng, MIN_SCALE, MAX_SCALE * short, 1)
        # size = enclosing diameter; capped so thin classes (arrow, triangle) do not dwarf the image
        sizes = np.minimum(scales / math.sqrt(FILL[_NAMES[label]]), 1.2 * short)
        groups.append([{"label": label, "size": float(s), "angle": rng.uniform(0, 2 * math.pi),
                        "aspect": float(_log_uniform(rng, 1 / MAX_ASPECT, MAX_ASPECT))} for s in sizes])
    keys = [math.log(g[0]["size"]) + rng.normal(0, 0.7) for g in groups]
    return [groups[i] for i in np.argsort(keys, kind="stable")[::-1]]


class _Canvas:
    """The image being painted plus the ownership map that turns painting order into visibility.

    img: ``(H, W, 3)`` float32; owner: ``(H, W)`` int32 index of the topmost shape (-1 = background);
    visible / full: per painted shape, its visible pixel count and its whole (unclipped) pixel count.
    """

    def __init__(self, img: np.ndarray):
        self.img, self.h, self.w = img, img.shape[0], img.shape[1]
        self.owner = np.full((self.h, self.w), -1, dtype=np.int32)
        self.visible, self.full = np.zeros(0, np.int64), np.zeros(0, np.int64)
        self.labels: list[int] = []
        self.slices: list[tuple[slice, slice]] = []

    def clip(self, mask: np.ndarray, x0: int, y0: int) -> tuple[np.ndarray, tuple[slice, slice]]:
        """The part of a shape mask ``(mh, mw)`` with top-left (x0, y0) inside the image, and its slices."""
        xa, ya = min(max(x0, 0), self.w), min(max(y0, 0), self.h)
        xb, yb = max(min(x0 + mask.shape[1], self.w), xa), max(min(y0 + mask.shape[0], self.h), ya)
        return mask[ya - y0:yb - y0, xa - x0:xb - x0], (slice(ya, yb), slice(xa, xb))

    def taken(self, clipped: np.ndarray, sl: tuple[slice, slice]) -> np.ndarray:
        """Pixels each painted shape would lose under ``clipped``: ``(num_painted,)``."""
        return np.bincount(self.owner[sl][clipped] + 1, minlength=len(self.visible) + 1)[1:]

    def keeps_labels(self, mask: np.ndarray, clipped: np.ndarray, taken: np.ndarray) -> bool:
        """Whether the new shape and every still-labelled shape stay above MIN_VISIBLE_FRACTION."""
        alive = self.visible >= MIN_VISIBLE_FRACTION * self.full
        return clipped.sum() >= MIN_VISIBLE_FRACTION * mask.sum() and not np.any(
            alive & (self.visible - taken < MIN_VISIBLE_FRACTION * self.full))

    def paint(self, label: int, clipped: np.ndarray, sl: tuple[slice, slice], full: int, taken: np.ndarray,
              colour: np.ndarray, shade: np.ndarray) -> None:
        self.img[sl][clipped] = colour[None, :] + shade[:, None]
        self.owner[sl][clipped] = len(self.labels)
        self.visible = np.append(self.visible - taken, clipped.sum())
        self.full = np.append(self.full, full)
        self.labels.append(label)
        self.slices.append(sl)


def _pick_colour(rng: np.random.Generator, under: np.ndarray, owners: np.ndarray, base: np.ndarray | None
                 ) -> np.ndarray:
    """An RGB colour ``(3,)`` contrasting with every region the shape covers (background and each shape it
    occludes); a random colour is otherwise often near-invisible on a textured background.

    under: ``(N, 3)`` current pixels under the mask; owners: ``(N,)`` their owner ids (-1 = background).
    base: colour of the previous cluster member, tried first with jitter so cluster members look alike.
    """
    counts = np.bincount(owners + 1)
    keep = counts >= max(4, 0.05 * len(owners))  # regions big enough to matter for visibility
    sums = np.stack([np.bincount(owners + 1, under[:, c], len(counts)) for c in range(3)], 1)
    means = sums[keep] / counts[keep, None]
    best, best_d = None, -1.0
    for attempt in range(16):
        if base is not None and attempt < 4:
            c = np.clip(base + rng.normal(0, 25, 3), 0, 255)
        else:
            c = rng.uniform(0, 255, 3)
        d = float(np.linalg.norm(means - c, axis=1).min()) if len(means) else 255.0
        if d >= 100:  # RGB distance; ~100 reads as clearly different even after JPEG and noise
            return c
        if d > best_d:
            best, best_d = c, d
    return best


def _place(rng: np.random.Generator, canvas: _Canvas, spec: dict, anchors: list[tuple[float, float, float]]
           ) -> tuple[tuple[float, float, float], int, np.ndarray, tuple[slice, slice], np.ndarray]:
    """Rasterise ``spec`` at up to 6 random positions and keep the first that leaves every label visible
    enough (else the last: a few shapes do get mostly hidden and dropped). A cluster member is put touching
    a random earlier member (``anchors``: their centre x, y and radius). Returns (anchor, full area, clipped
    mask, slices, taken)."""
    r = spec["size"] / 2
    for attempt in range(6):
        if anchors:
            ax, ay, ar = anchors[int(rng.integers(len(anchors)))]
            d, phi = (ar + r) * rng.uniform(0.7, 1.0), rng.uniform(0, 2 * math.pi)
            cx, cy = ax + d * math.cos(phi), ay + d * math.sin(phi)
        else:  # centre at least r/2 inside the border: truncation happens but is bounded
            cx = rng.uniform(min(r / 2, canvas.w / 2), max(canvas.w - r / 2, canvas.w / 2))
            cy = rng.uniform(min(r / 2, canvas.h / 2), max(canvas.h - r / 2, canvas.h / 2))
        name = _NAMES[spec["label"]]
        mask, x0, y0 = render_shape(name, spec["size"], spec["aspect"], spec["angle"], cx, cy)
        clipped, sl = canvas.clip(mask, x0, y0)
        taken = canvas.taken(clipped, sl)
        if attempt == 5 or canvas.keeps_labels(mask, clipped, taken):
            return (cx, cy, r), int(mask.sum()), clipped, sl, taken


def render_scene(rng: np.random.Generator, h: int, w: int, max_objects: int) -> tuple[np.ndarray, list[dict]]:
    """One image ``(h, w, 3)`` uint8 and its labels: dicts with ``label`` (index into CATEGORIES), ``mask``
    (bool crop ``(mh, mw)`` of the visible region) and ``offset`` (x0, y0) of that crop in the image."""
    canvas = _Canvas(draw_clutter(rng, background(rng, h, w)))
    for group in _plan(rng, h, w, max_objects):
        anchors, colour = [], None
        for spec in group:
            anchor, full, clipped, sl, taken = _place(rng, canvas, spec, anchors)
            anchors.append(anchor)
            if not clipped.any():
                continue
            colour = _pick_colour(rng, canvas.img[sl][clipped], canvas.owner[sl][clipped], colour)
            # a linear shading ramp across the shape, so flat colour is not the only appearance
            yy, xx = np.nonzero(clipped)
            phi, ramp = rng.uniform(0, 2 * math.pi), rng.uniform(0, 30) / max(anchor[2], 1.0)
            shade = ramp * ((xx - xx.mean()) * math.cos(phi) + (yy - yy.mean()) * math.sin(phi))
            canvas.paint(spec["label"], clipped, sl, full, taken, colour, shade)
    noise = rng.standard_normal(canvas.img.shape, dtype=np.float32) * rng.uniform(0, 8)  # sensor noise
    labels = []
    for i, (label, sl) in enumerate(zip(canvas.labels, canvas.slices)):
        if canvas.visible[i] >= max(MIN_VISIBLE_FRACTION * canvas.full[i], MIN_VISIBLE_PIXELS):
            vis = canvas.owner[sl] == i
            labels.append({"label": label, "mask": vis, "offset": (sl[1].start, sl[0].start)})
    return np.clip(canvas.img + noise, 0, 255).astype(np.uint8), labels
