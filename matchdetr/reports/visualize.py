"""Pictures for people: detections drawn on images, prediction grids, training curves.

Everything here runs headless: PIL's bundled default font (no font files needed) and matplotlib's
object-oriented Agg canvas, which (unlike `pyplot` + `matplotlib.use`) leaves the caller's global
backend alone.
"""

from __future__ import annotations

import functools
import math
import os

import warnings
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..io.files import atomic_write, read_jsonl

__all__ = ["class_color", "draw_detections", "save_prediction_grid", "plot_training_curves"]

# Distinct, saturated colours (tab10 plus brighter variants); picked by a hash of the class name.
_PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (188, 189, 34), (23, 190, 207), (255, 187, 120), (152, 223, 138), (255, 152, 150),
    (197, 176, 213), (0, 128, 128), (255, 215, 0), (0, 191, 255), (154, 205, 50), (255, 99, 71),
    (186, 85, 211), (70, 130, 180),
]
_GRID_BG = (32, 32, 32)

def class_color(name: str) -> tuple[int, int, int]:
    """RGB colour of a class. crc32, not hash(): Python salts str hashes per process."""
    return _PALETTE[zlib.crc32(name.encode("utf-8")) % len(_PALETTE)]

@functools.lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:  # Pillow >= 10.1 ships a scalable default font when FreeType is available
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()

def _as_array(x: Any, cols: int | None = None) -> np.ndarray:
    """Tensor / array / list -> float64 numpy array ([N, cols] when cols is given)."""
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().float().numpy()
    arr = np.asarray(x, dtype=np.float64)
    return arr.reshape(-1, cols) if cols else arr.reshape(-1)

def _clip_box(box: np.ndarray, width: int, height: int) -> tuple[float, float, float, float] | None:
    """Clip xyxy to the image; None when non-finite or entirely outside (nothing to draw)."""
    if not np.isfinite(box).all():
        return None
    x1, y1 = max(0.0, min(box[0], box[2])), max(0.0, min(box[1], box[3]))
    x2, y2 = min(width - 1.0, max(box[0], box[2])), min(height - 1.0, max(box[1], box[3]))
    return (x1, y1, x2, y2) if x1 <= x2 and y1 <= y2 else None

def _draw_label(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str,
                color: tuple[int, int, int], size: tuple[int, int], font_size: int) -> None:
    """Filled label above the box corner, moved inside the image when it would stick out."""
    font, pad = _font(font_size), 1
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    tw, th = right - left + 2 * pad, bottom - top + 2 * pad
    x = min(max(xy[0], 0), max(size[0] - tw, 0))
    y = xy[1] - th if xy[1] - th >= 0 else xy[1]  # inside the box when there is no room above
    y = min(max(y, 0), max(size[1] - th, 0))
    draw.rectangle([x, y, x + tw - 1, y + th - 1], fill=color)
    # Dark text on light colours: relative luminance (ITU-R BT.601 weights).
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    draw.text((x + pad - left, y + pad - top), text, font=font, fill=(0, 0, 0) if luminance > 150 else (255,) * 3)

def _sizes(image: Image.Image) -> tuple[int, int]:
    """Line width and font size that stay readable from thumbnails to full-HD frames."""
    short = min(image.size)
    return max(1, round(short / 250)), int(np.clip(round(short * 0.03), 8, 24))

MASK_ALPHA = 0.45  # opacity of an instance mask's fill over the image


def draw_detections(image: Image.Image, boxes: Any, scores: Any, names: Sequence[str], *,
                    max_dets: int = 100, masks: Any = None) -> Image.Image:
    """Draw the `max_dets` highest-scoring detections on a copy of `image`.

    boxes:  [K, 4] absolute xyxy pixels (tensor, array or list); boxes are clipped to the image.
    scores: [K]; names: K class names (colour and label text).
    masks:  optional [K, H, W] bool instance masks of the image, filled in each class's colour under the boxes.
    Returns a new RGB image; the input is left untouched.
    """
    out = image.convert("RGB") if image.mode != "RGB" else image.copy()
    boxes, scores = _as_array(boxes, 4), _as_array(scores)
    if not len(boxes) == len(scores) == len(names):
        raise ValueError(f"draw_detections: {len(boxes)} boxes, {len(scores)} scores, {len(names)} names")
    keep = np.argsort(-scores, kind="stable")[:max_dets]
    if masks is not None:
        masks = np.asarray(masks.cpu() if hasattr(masks, "cpu") else masks, dtype=bool)
        if masks.shape != (len(boxes), out.height, out.width):
            raise ValueError(f"draw_detections: masks {masks.shape} for {len(boxes)} detections on a "
                             f"{out.height}x{out.width} image")
        pixels = np.asarray(out, dtype=np.float32)
        for i in keep[::-1]:  # the most confident mask painted last, on top
            pixels[masks[i]] = (1 - MASK_ALPHA) * pixels[masks[i]] + MASK_ALPHA * np.array(class_color(names[i]))
        out = Image.fromarray(pixels.round().astype(np.uint8))
    width, font_size = _sizes(out)
    draw = ImageDraw.Draw(out)
    for i in keep[::-1]:  # lowest score first, so the most confident labels end up on top
        box = _clip_box(boxes[i], *out.size)
        if box is None:
            continue
        color = class_color(names[i])
        draw.rectangle(box, outline=color, width=width)
        _draw_label(draw, (box[0], box[1]), f"{names[i]} {scores[i]:.2f}", color, out.size, font_size)
    return out

def _dashed_rectangle(draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float],
                      color: tuple[int, int, int], dash: int = 4, gap: int = 3) -> None:
    """Thin dashed outline; PIL has no dash style, so draw it as short segments."""
    x1, y1, x2, y2 = box
    for (ax, ay), (bx, by) in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)),
                               ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        length = math.hypot(bx - ax, by - ay)
        for start in np.arange(0.0, max(length, 1e-6), dash + gap):
            end = min(start + dash, length)
            t0, t1 = start / max(length, 1e-6), end / max(length, 1e-6)
            draw.line([(ax + (bx - ax) * t0, ay + (by - ay) * t0), (ax + (bx - ax) * t1, ay + (by - ay) * t1)],
                      fill=color, width=1)

def save_prediction_grid(images: Sequence[Image.Image], detections: Sequence[dict], out_path: str | os.PathLike,
                         *, gts: Sequence[dict] | None = None, cols: int = 4) -> None:
    """Tile annotated images into one PNG.

    detections[i]: {"boxes": [K, 4] xyxy pixels of images[i], "scores": [K], "names": K strings}.
    gts[i] (optional): {"boxes", "names"}, drawn as thin dashed white boxes under the predictions.
    Images are resized to a common height (the tallest, kept within 128..512 px so tiny images stay
    legible and big ones keep the file small) before drawing, so lines and labels match across tiles.
    """
    if not images:
        raise ValueError("save_prediction_grid: no images given")
    if len(detections) != len(images) or (gts is not None and len(gts) != len(images)):
        raise ValueError(f"save_prediction_grid: {len(images)} images but {len(detections)} detections"
                         + ("" if gts is None else f" and {len(gts)} gts"))
    height = int(np.clip(max(im.height for im in images), 128, 512))
    tiles = []
    for i, (image, det) in enumerate(zip(images, detections)):
        scale = height / image.height
        tile = image.convert("RGB").resize((max(1, round(image.width * scale)), height), Image.BILINEAR)
        if gts is not None:
            draw = ImageDraw.Draw(tile)
            for box in _as_array(gts[i]["boxes"], 4) * scale:
                clipped = _clip_box(box, *tile.size)
                if clipped is not None:
                    _dashed_rectangle(draw, clipped, (255, 255, 255))
        tiles.append(draw_detections(tile, _as_array(det["boxes"], 4) * scale, det["scores"], list(det["names"])))
    pad, cols = 4, max(1, min(cols, len(tiles)))
    rows, cell_w = math.ceil(len(tiles) / cols), max(t.width for t in tiles)
    grid = Image.new("RGB", (cols * cell_w + (cols + 1) * pad, rows * height + (rows + 1) * pad), _GRID_BG)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        grid.paste(tile, (pad + c * (cell_w + pad) + (cell_w - tile.width) // 2, pad + r * (height + pad)))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out, format="PNG")

def _read_jsonl(path: Path) -> list[dict]:
    """Parse metrics.jsonl, skipping (with one warning) lines a killed run left half-written."""
    records, bad = read_jsonl(path)
    if bad:
        warnings.warn(f"{path}: skipped {len(bad)} malformed line(s) (line {', '.join(map(str, bad[:5]))})",
                      stacklevel=3)
    if not records:
        raise ValueError(f"{path}: no metrics records (file is empty or unreadable)")
    return records


def _series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(iters, values) for records holding a finite `key`, sorted by iter (resumed runs append out of order)."""
    pts = [(float(r["iter"]), float(r[key])) for r in records
           if isinstance(r.get("iter"), (int, float)) and isinstance(r.get(key), (int, float))
           and math.isfinite(r[key])]
    pts.sort(key=lambda p: p[0])
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts])

def _ema(values: np.ndarray) -> np.ndarray:
    """Bias-corrected exponential moving average (as TensorBoard smooths); span ~ 1/25 of the run."""
    beta = 1.0 - 2.0 / (max(1, len(values) // 25) + 1)
    out, acc = np.empty_like(values), 0.0
    for i, v in enumerate(values):
        acc = beta * acc + (1 - beta) * v
        out[i] = acc / (1 - beta ** (i + 1)) if beta > 0 else v
    return out

def plot_training_curves(metrics_jsonl: str | os.PathLike, out_png: str | os.PathLike) -> None:
    """Two panels from a metrics.jsonl: training loss vs iter (raw + smoothed) with the validation loss, and
    AP / AP50 vs iter.

    Training lines have "type": "train" with "iter" and "loss"; eval lines "type": "eval" with "iter",
    "AP", "AP50" and (from training) "val_loss". Raises ValueError naming the file when it holds no records.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(metrics_jsonl)
    records = _read_jsonl(path)
    train = [r for r in records if r.get("type", "train") == "train"]
    evals = [r for r in records if r.get("type") == "eval"]

    fig = Figure(figsize=(12, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_ap = fig.subplots(1, 2)
    it, loss = _series(train, "loss")
    if len(it):
        ax_loss.plot(it, loss, color="tab:blue", alpha=0.25, linewidth=0.8, label="loss")
        ax_loss.plot(it, _ema(loss), color="tab:blue", linewidth=2.0, label="loss (smoothed)")
        vx, vy = _series(evals, "val_loss")  # the criterion on the validation split, at each evaluation
        if len(vx):
            ax_loss.plot(vx, vy, marker="o", color="tab:orange", label="val loss")
        ax_loss.legend(loc="upper right")
    else:
        ax_loss.text(0.5, 0.5, "no training records yet", ha="center", va="center", transform=ax_loss.transAxes)
        ax_loss.set(xticks=[], yticks=[])
    ax_loss.set(title="training loss", xlabel="iteration", ylabel="loss")

    plotted = False
    for key, color in (("AP", "tab:red"), ("AP50", "tab:green")):
        x, y = _series(evals, key)
        if len(x):
            ax_ap.plot(x, y, marker="o", color=color, label=key)
            plotted = True
    if plotted:
        ax_ap.legend(loc="lower right")
    else:
        ax_ap.text(0.5, 0.5, "no evaluation yet", ha="center", va="center", transform=ax_ap.transAxes)
        ax_ap.set(xticks=[], yticks=[])  # 0..1 placeholder ticks would read as real AP values
    ax_ap.set(title="COCO bbox AP (%)", xlabel="iteration", ylabel="AP")
    for ax in (ax_loss, ax_ap):
        ax.grid(alpha=0.3)
    fig.suptitle(path.parent.name or path.name)  # the run directory's name

    # Write then rename: a dashboard may be polling this file while training runs.
    atomic_write(out_png, lambda tmp: fig.savefig(tmp, format="png"))
