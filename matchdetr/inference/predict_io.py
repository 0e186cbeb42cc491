"""What ``matchdetr predict`` reads and writes, shared by the PyTorch and the onnxruntime paths; no torch here.

Inputs: image files, folders of images (non-recursive, sorted) and video files (every ``--every``-th frame;
needs OpenCV: ``pip install '.[video]'`` in the checkout). Outputs: annotated PNGs, ``detections.json`` and, on
request, a COCO results JSON (``image_id``, ``category_id``, ``bbox`` [x, y, w, h] pixels, ``score``), the
format ``matchdetr eval --predictions`` and every COCO tool read.

``detections.json`` holds one record per input (``file``, ``annotated``, video ``frame``) with its
``detections``, each ``{"box", "score", "label", "name"}`` (see :func:`detection_entry`; a mask model adds the
COCO RLE ``segmentation``).

Detections are dicts as :meth:`matchdetr.Detector.predict` returns them, which is HF transformers'
``post_process_object_detection`` shape: ``scores [K]``, ``labels [K]`` (dataset category ids), ``boxes
[K, 4]`` xyxy pixels, plus ``names`` (K strings); values may be torch tensors or numpy arrays.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from PIL import Image

from ..io.files import atomic_write_text, read_json
from .outputs import DETECTIONS_JSON, IMAGE_EXTS, VIDEO_EXTS, check_outputs, expand_inputs

__all__ = ["IMAGE_EXTS", "VIDEO_EXTS", "Frame", "iter_frames", "to_coco_results", "write_coco_results",
           "run_predict", "check_outputs", "PredictPlan", "plan_predict", "read_gt_image_ids", "MissingExtra",
           "VideoReaderMissing"]


class MissingExtra(ImportError, ValueError):
    """An optional dependency is not installed (a ValueError too, so the CLI reports it in one line)."""


class VideoReaderMissing(MissingExtra):
    """Reading a video needs OpenCV, an optional extra."""


@dataclass
class Frame:
    """One image to run on: its source file, its output name (``stem`` or ``stem_f000012`` for video frames,
    unique per input: ``predict_outputs.output_names``), the decoded RGB image, and for video frames the
    frame index."""

    source: Path
    name: str
    image: Image.Image
    frame: int | None = None


def _as_list(x: Any) -> list:
    return x.tolist() if hasattr(x, "tolist") else list(x)


def _open_video(path: Path) -> Any:
    try:
        import cv2
    except ImportError:
        raise VideoReaderMissing(f"{path}: reading video needs OpenCV: pip install opencv-python-headless (in the "
                                 "matchdetr checkout: pip install '.[video]')") from None
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"{path}: cannot open the video (unsupported codec or not a video)")
    return cap


def _video_frames(path: Path, name: str, every: int) -> Iterator[Frame]:
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
                yield Frame(path, f"{name}_f{index:06d}", rgb, index)
            index += 1
    finally:
        cap.release()


def iter_frames(inputs: Sequence[str | os.PathLike], load_image: Callable[[Path], Image.Image],
                every: int = 1, names: dict[Path, str] | None = None,
                skipped: list[Path] | None = None) -> Iterator[Frame]:
    """Images and video frames of ``inputs`` in order; ``load_image`` decodes one image file.

    An image (or video) that cannot be read is reported in a warning naming it and skipped; it is appended to
    ``skipped`` when given. A missing video reader (OpenCV) fails before any work.
    names: output name per input path (default: each file's stem).
    """
    paths = list(names) if names is not None else expand_inputs(inputs)
    if not paths:
        raise FileNotFoundError(f"no images or videos found in {', '.join(map(str, inputs))}")
    if every < 1:
        raise ValueError(f"--every must be >= 1, got {every}")
    videos = [p for p in paths if p.suffix.lower() in VIDEO_EXTS]
    if videos:
        try:
            import cv2  # noqa: F401
        except ImportError:
            _open_video(videos[0])  # raises the one-line VideoReaderMissing
    for p in paths:
        name = names[p] if names is not None else p.stem
        try:
            if p.suffix.lower() in VIDEO_EXTS:
                yield from _video_frames(p, name, every)
                continue
            image = load_image(p)
        except (ValueError, OSError) as err:  # ImageLoadError is a ValueError; messages name the file
            if isinstance(err, VideoReaderMissing):
                raise
            warnings.warn(f"{err}; skipped", stacklevel=2)
            if skipped is not None:
                skipped.append(p)
            continue
        yield Frame(p, name, image)


def detection_entry(box: Sequence[float], score: float, label: int, name: str) -> dict[str, Any]:
    """One detection of ``detections.json``: the singular of each key ``Detector.predict`` returns per image
    (``boxes`` -> ``box`` xyxy pixels, ``scores`` -> ``score``, ``labels`` -> ``label``, the dataset category
    id, ``names`` -> ``name``). ``bbox_xyxy`` and ``category_id``, the names files written before had, are kept
    beside them with the same values, so that readers of those files keep working."""
    xyxy = [round(float(v), 2) for v in box]
    return {"box": xyxy, "score": round(float(score), 4), "label": int(label), "name": name,
            "bbox_xyxy": list(xyxy), "category_id": int(label)}


def to_coco_results(detections: Sequence[dict], image_ids: Sequence[int]) -> list[dict]:
    """COCO results entries from per-image detections (``boxes`` xyxy pixels, ``scores``, ``labels`` =
    category ids, and for instance segmentation ``masks`` ``[K, H, W]`` bool at the original image size) and
    each image's COCO ``image_id``. With masks, each entry also has its ``segmentation`` as compressed RLE
    (``str`` counts), so the one list scores both bbox and segm AP."""
    if len(detections) != len(image_ids):
        raise ValueError(f"{len(detections)} detection sets but {len(image_ids)} image ids")
    out = []
    for det, image_id in zip(detections, image_ids):
        rles = _rles(det["masks"], len(det["scores"])) if det.get("masks") is not None else None
        for k, ((x0, y0, x1, y1), score, label) in enumerate(zip(_as_list(det["boxes"]), _as_list(det["scores"]),
                                                                 _as_list(det["labels"]))):
            out.append({"image_id": int(image_id), "category_id": int(label),
                        "bbox": [round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2),
                                 round(float(y1 - y0), 2)], "score": round(float(score), 5)})
            if rles is not None:
                out[-1]["segmentation"] = rles[k]
    return out


def _rles(masks: Any, count: int) -> list[dict]:
    from ..io.rle import masks_to_rle  # numpy: the ONNX-only install writes masks too

    rles = masks_to_rle(masks)
    if len(rles) != count:
        raise ValueError(f"{len(rles)} masks but {count} detections")
    return rles


def write_coco_results(detections: Sequence[dict], image_ids: Sequence[int], path: str | os.PathLike) -> Path:
    """Write :func:`to_coco_results` as a JSON list (atomically); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(to_coco_results(detections, image_ids)))
    return path


@dataclass
class PredictPlan:
    """What ``predict`` settles before loading its model: the inputs in order, their output names
    (``outputs.output_names``) and, with ``--coco-gt``, the image id of each input file name."""

    paths: list[Path]
    names: dict[Path, str]
    gt_ids: dict[str, int] | None = None


def plan_predict(inputs: Sequence[str | os.PathLike], out: str | os.PathLike, coco_json: str | os.PathLike | None = None,
                 coco_gt: str | os.PathLike | None = None, into_dataset: bool = False) -> PredictPlan:
    """Every check ``predict`` can make before any work: no output over an input, nor inside a dataset split
    unless ``into_dataset``, ``--out`` writable, and a ``--coco-gt`` that exists, is a COCO annotation file and
    names every input (one line each)."""
    paths, names = check_outputs(inputs, out, coco_json, into_dataset)
    return PredictPlan(paths, names, read_gt_image_ids(coco_gt, paths) if coco_gt is not None else None)


def read_gt_image_ids(coco_gt: str | os.PathLike, paths: Sequence[Path] = ()) -> dict[str, int]:
    """``{file name: image id}`` of the ``images`` of a COCO annotation file; ValueError (one line naming the file
    and the entry) when it is not one, or when it has no entry for one of ``paths``."""
    where = Path(coco_gt)
    data = read_json(where, "a COCO annotation file")
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        got = f"'images' is {type(images).__name__}" if isinstance(data, dict) else f"got {type(data).__name__}"
        raise ValueError(f"--coco-gt {where}: must be a COCO annotation JSON object with an 'images' list ({got})")
    by_name: dict[str, int] = {}
    for i, im in enumerate(images):
        if isinstance(im, dict) and "file_name" not in im:
            continue  # cannot be matched to an input; COCO tools ignore it too
        if not isinstance(im, dict) or not isinstance(im["file_name"], str) or type(im.get("id")) is not int:
            raise ValueError(f"--coco-gt {where}: images[{i}] needs a string file_name and an integer id, "
                             f"got {str(im)[:60]}")
        by_name[Path(im["file_name"]).name] = im["id"]
    missing = [p.name for p in paths if p.name not in by_name]
    if missing:
        raise ValueError(f"--coco-gt {where}: no image entry for {missing[:5]}")
    return by_name


def _image_ids(frames: list[Frame], gt_ids: dict[str, int] | None) -> list[int]:
    """COCO image ids: by file name from ``--coco-gt`` (``gt_ids``) when given; else the file stem when it is a
    number (COCO's ``000000397133.jpg``); else 1, 2, ... in input order. Video frames count 1, 2, ..."""
    if gt_ids is not None:
        return [gt_ids[f.source.name] for f in frames]
    if all(f.frame is None and f.source.stem.isdigit() for f in frames):
        return [int(f.source.stem) for f in frames]
    return list(range(1, len(frames) + 1))


def run_predict(predict: Callable[[list[Image.Image]], list[dict]], inputs: Sequence[str], out: str | os.PathLike,
                load_image: Callable[[Path], Image.Image], *, threshold: float, coco_json: str | None = None,
                coco_gt: str | None = None, every: int = 1, draw: bool = True,
                plan: PredictPlan | None = None) -> dict[str, Any]:
    """Run ``predict`` over every image and video frame of ``inputs``; write annotated PNGs and
    ``OUT/detections.json`` (and ``coco_json``). Returns a summary dict.

    Output names and the never-over-an-input rules are those of ``predict_outputs.py``. Unreadable inputs
    are reported and skipped; when nothing could be read at all, ValueError (one line) and nothing is written.
    plan: what :func:`plan_predict` returned, when the caller checked before loading its model (else made here).
    """
    from ..io.rle import masks_to_rle
    from ..reports.visualize import draw_detections

    plan = plan if plan is not None else plan_predict(inputs, out, coco_json, coco_gt)
    names = plan.names
    out_dir = Path(out)
    records, frames, dets = [], [], []
    skipped: list[Path] = []
    used = {n.casefold() for n in names.values()}
    for frame in iter_frames(inputs, load_image, every, names=names, skipped=skipped):
        det = predict([frame.image])[0]
        record: dict[str, Any] = {"file": str(frame.source)}
        if frame.frame is not None:
            record["frame"] = frame.frame
            if frame.name.casefold() in used:  # a video frame named like another input's output
                frame.name = f"{frame.name}_2"
            used.add(frame.name.casefold())
        if draw:
            png = out_dir / f"{frame.name}.png"
            draw_detections(frame.image, det["boxes"], det["scores"], list(det["names"]), masks=det.get("masks")).save(png)
            record["annotated"] = str(png)
        record["detections"] = [detection_entry(b, s, c, n) for b, s, c, n in zip(
            _as_list(det["boxes"]), _as_list(det["scores"]), _as_list(det["labels"]), det["names"])]
        if det.get("masks") is not None:  # instance masks as COCO compressed RLE of the original image
            for entry, rle in zip(record["detections"], masks_to_rle(det["masks"])):
                entry["segmentation"] = rle
        records.append(record)
        frames.append(Frame(frame.source, frame.name, Image.new("RGB", (1, 1)), frame.frame))  # drop pixels
        dets.append(det)
    if not records and skipped:
        raise ValueError(f"none of the {len(skipped)} inputs could be read (see the warnings above); nothing written")
    atomic_write_text(out_dir / DETECTIONS_JSON, json.dumps(records, indent=1))
    summary: dict[str, Any] = {"images": len(records), "detections": sum(len(r["detections"]) for r in records),
                               "out": str(out_dir), "skipped": len(skipped)}
    if coco_json:
        summary["coco_json"] = str(write_coco_results(dets, _image_ids(frames, plan.gt_ids), coco_json))
    return summary


def summary_line(summary: dict[str, Any], threshold: float) -> str:
    line = (f"{summary['images']} images, {summary['detections']} detections above {threshold}; "
            f"wrote {summary['out']}/*.png and {summary['out']}/detections.json")
    if "coco_json" in summary:
        line += f" and {summary['coco_json']} (COCO results)"
    if summary.get("skipped"):
        line += f"; {summary['skipped']} unreadable input(s) skipped (see the warnings)"
    return line
