"""What ``matchdetr predict`` reads and writes, shared by the PyTorch and the onnxruntime paths; no torch here.

Inputs: image files, folders of images (non-recursive, sorted) and video files (every ``--every``-th frame;
needs OpenCV: ``pip install 'matchdetr[video]'``). Outputs: annotated PNGs, ``detections.json`` and, on
request, a COCO results JSON (``image_id``, ``category_id``, ``bbox`` [x, y, w, h] pixels, ``score``), the
format ``matchdetr eval --predictions`` and every COCO tool read.

Detections are dicts as :meth:`matchdetr.Detector.predict` returns them, which is HF transformers'
``post_process_object_detection`` shape: ``scores [K]``, ``labels [K]`` (dataset category ids), ``boxes
[K, 4]`` xyxy pixels, plus ``names`` (K strings); values may be torch tensors or numpy arrays.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from PIL import Image

from .fileio import atomic_write_text

__all__ = ["IMAGE_EXTS", "VIDEO_EXTS", "Frame", "iter_frames", "to_coco_results", "write_coco_results",
           "run_predict", "MissingExtra", "VideoReaderMissing"]

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


class MissingExtra(ImportError, ValueError):
    """An optional dependency is not installed (a ValueError too, so the CLI reports it in one line)."""


class VideoReaderMissing(MissingExtra):
    """Reading a video needs OpenCV, an optional extra."""


@dataclass
class Frame:
    """One image to run on: its source file, a display name (``stem`` or ``stem_f000012`` for video
    frames), the decoded RGB image, and for video frames the frame index."""

    source: Path
    name: str
    image: Image.Image
    frame: int | None = None


def _as_list(x: Any) -> list:
    return x.tolist() if hasattr(x, "tolist") else list(x)


def _expand(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_EXTS | VIDEO_EXTS)
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such image, video or folder")
    return out


def _open_video(path: Path) -> Any:
    try:
        import cv2
    except ImportError:
        raise VideoReaderMissing(f"{path}: reading video needs OpenCV; pip install 'matchdetr[video]' "
                                 "(opencv-python-headless)") from None
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"{path}: cannot open the video (unsupported codec or not a video)")
    return cap


def _video_frames(path: Path, every: int) -> Iterator[Frame]:
    import cv2

    cap = _open_video(path)
    try:
        index = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            if index % every == 0:
                rgb = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                yield Frame(path, f"{path.stem}_f{index:06d}", rgb, index)
            index += 1
    finally:
        cap.release()


def iter_frames(inputs: Sequence[str | os.PathLike], load_image: Callable[[Path], Image.Image],
                every: int = 1) -> Iterator[Frame]:
    """Images and video frames of ``inputs`` in order; ``load_image`` decodes one image file."""
    paths = _expand(inputs)
    if not paths:
        raise FileNotFoundError(f"no images or videos found in {', '.join(map(str, inputs))}")
    if every < 1:
        raise ValueError(f"--every must be >= 1, got {every}")
    for p in [p for p in paths if p.suffix.lower() in VIDEO_EXTS]:
        _open_video(p).release()  # fail before any work when a reader is missing or a file is unreadable
    for p in paths:
        if p.suffix.lower() in VIDEO_EXTS:
            yield from _video_frames(p, every)
        else:
            yield Frame(p, p.stem, load_image(p))


def to_coco_results(detections: Sequence[dict], image_ids: Sequence[int]) -> list[dict]:
    """COCO results entries from per-image detections (``boxes`` xyxy pixels, ``scores``, ``labels`` =
    category ids) and each image's COCO ``image_id``."""
    if len(detections) != len(image_ids):
        raise ValueError(f"{len(detections)} detection sets but {len(image_ids)} image ids")
    out = []
    for det, image_id in zip(detections, image_ids):
        for (x0, y0, x1, y1), score, label in zip(_as_list(det["boxes"]), _as_list(det["scores"]),
                                                  _as_list(det["labels"])):
            out.append({"image_id": int(image_id), "category_id": int(label),
                        "bbox": [round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2),
                                 round(float(y1 - y0), 2)], "score": round(float(score), 5)})
    return out


def write_coco_results(detections: Sequence[dict], image_ids: Sequence[int], path: str | os.PathLike) -> Path:
    """Write :func:`to_coco_results` as a JSON list (atomically); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(to_coco_results(detections, image_ids)))
    return path


def _image_ids(frames: list[Frame], coco_gt: str | os.PathLike | None) -> list[int]:
    """COCO image ids: by file name from ``coco_gt`` when given; else the file stem when it is a number
    (COCO's ``000000397133.jpg``); else 1, 2, ... in input order. Video frames count 1, 2, ..."""
    if coco_gt is not None:
        with open(coco_gt, encoding="utf-8") as f:
            images = json.load(f).get("images", [])
        by_name = {Path(str(im["file_name"])).name: int(im["id"]) for im in images if "file_name" in im}
        missing = [f.source.name for f in frames if f.source.name not in by_name]
        if missing:
            raise ValueError(f"{coco_gt}: no image entry for {missing[:5]}")
        return [by_name[f.source.name] for f in frames]
    if all(f.frame is None and f.source.stem.isdigit() for f in frames):
        return [int(f.source.stem) for f in frames]
    return list(range(1, len(frames) + 1))


def run_predict(predict: Callable[[list[Image.Image]], list[dict]], inputs: Sequence[str], out: str | os.PathLike,
                load_image: Callable[[Path], Image.Image], *, threshold: float, coco_json: str | None = None,
                coco_gt: str | None = None, every: int = 1, draw: bool = True) -> dict[str, Any]:
    """Run ``predict`` over every image and video frame of ``inputs``; write annotated PNGs and
    ``OUT/detections.json`` (and ``coco_json``). Returns a summary dict."""
    from .visualize import draw_detections

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    records, frames, dets = [], [], []
    for frame in iter_frames(inputs, load_image, every):
        det = predict([frame.image])[0]
        record: dict[str, Any] = {"file": str(frame.source)}
        if frame.frame is not None:
            record["frame"] = frame.frame
        if draw:
            png = out_dir / f"{frame.name}.png"
            draw_detections(frame.image, det["boxes"], det["scores"], list(det["names"])).save(png)
            record["annotated"] = str(png)
        record["detections"] = [
            {"bbox_xyxy": [round(float(v), 2) for v in b], "score": round(float(s), 4), "category_id": int(c),
             "name": n}
            for b, s, c, n in zip(_as_list(det["boxes"]), _as_list(det["scores"]), _as_list(det["labels"]),
                                  det["names"])]
        records.append(record)
        frames.append(Frame(frame.source, frame.name, Image.new("RGB", (1, 1)), frame.frame))  # drop pixels
        dets.append(det)
    atomic_write_text(out_dir / "detections.json", json.dumps(records, indent=1))
    summary: dict[str, Any] = {"images": len(records), "detections": sum(len(r["detections"]) for r in records),
                               "out": str(out_dir)}
    if coco_json:
        summary["coco_json"] = str(write_coco_results(dets, _image_ids(frames, coco_gt), coco_json))
    return summary


def summary_line(summary: dict[str, Any], threshold: float) -> str:
    line = (f"{summary['images']} images, {summary['detections']} detections above {threshold}; "
            f"wrote {summary['out']}/*.png and {summary['out']}/detections.json")
    if "coco_json" in summary:
        line += f" and {summary['coco_json']} (COCO results)"
    return line
