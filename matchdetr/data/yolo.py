"""YOLO txt datasets as Ultralytics users have them, read into a COCO dict (see ``formats.py``).

Layout: ``DIR/data.yaml`` (``path``, ``train``, ``val``, ``names``) with image folders such as
``images/train``; each image ``.../images/.../x.jpg`` has its labels in ``.../labels/.../x.txt`` (the last
``images`` path component becomes ``labels``), one object per line: ``class cx cy w h``, normalised to
[0, 1] of the upright image, or Ultralytics' segment line ``class x1 y1 x2 y2 ...`` (3 points or more): a COCO
polygon ``segmentation`` with its extent as the box and its (shoelace) area as ``area``. Without a
YAML file, ``DIR/images/SPLIT`` + ``DIR/labels/SPLIT`` (or ``DIR/SPLIT/images``) and class names from
``classes.txt`` (one per line) work too. A missing or empty label file makes the image a negative.

The YAML is read with ``yaml.safe_load`` when PyYAML is installed, otherwise with a small parser of the subset
these files use; it is data either way, never evaluated.
"""

from __future__ import annotations

import ast
import math
import re
import warnings
from pathlib import Path
from typing import Any

from .common import IMAGE_SUFFIXES, DatasetError, DatasetWarning, SplitPaths, coco_dict, image_header, upright_to_stored
from .images import ImageLoadError

_SPLIT_ALIASES = {"val": ("val", "valid", "validation"), "train": ("train",), "test": ("test",)}
_NAMES_FILES = ("classes.txt", "names.txt", "obj.names")
_TOLERANCE = 0.01  # normalised coordinates may overshoot [0, 1] by this much (rounding in exporters)


# ---------------------------------------------------------------------------------------------- YAML
def load_yaml(path: Path) -> dict:
    """A YAML mapping as data: ``yaml.safe_load`` when available, else ``parse_simple_yaml``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read YAML file ({err})") from None
    try:
        import yaml
    except ImportError:
        data: Any = parse_simple_yaml(text, path)
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise DatasetError(f"{path}: invalid YAML ({' '.join(str(err).split())[:160]})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a YAML mapping with train/val/names keys")
    return data


def _scalar(text: str) -> Any:
    text = text.strip()
    if not text or text in ("~", "null"):
        return None
    if text[0] in "[{'\"":
        try:  # flow lists/dicts and quoted strings: Python literals cover YAML's JSON-like subset
            return ast.literal_eval(re.sub(r"(?<=[\[,{:])\s*([A-Za-z_][\w\-. /]*)\s*(?=[,\]}:])", r"'\1'", text))
        except (ValueError, SyntaxError):
            return text
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_simple_yaml(text: str, path: Path | str = "<yaml>") -> dict:
    """The YAML subset of dataset files: ``key: value``, one nested level of ``k: v`` or ``- item``, comments,
    flow lists ``[a, b]``. Tags (``!!python/...``) are kept as plain strings: nothing is ever constructed."""
    root: dict = {}
    parent: str | None = None
    for raw in text.splitlines():
        line = re.sub(r"\s+#.*$", "", raw) if not raw.lstrip().startswith("#") else ""
        if not line.strip() or line.strip() == "---":
            continue
        indented = line[0] in " \t"
        body = line.strip()
        if indented and parent is not None:
            if body.startswith("- "):
                root[parent] = root[parent] if isinstance(root[parent], list) else []
                root[parent].append(_scalar(body[2:]))
                continue
            key, sep, value = body.partition(":")
            if sep:
                root[parent] = root[parent] if isinstance(root[parent], dict) else {}
                root[parent][_scalar(key)] = _scalar(value)
                continue
        key, sep, value = body.partition(":")
        if not sep or indented:
            raise DatasetError(f"{path}: cannot parse YAML line {raw.strip()!r} (install PyYAML for full YAML)")
        root[key.strip()] = _scalar(value)
        parent = key.strip() if root[key.strip()] is None else None
    return root


def _names(value: Any, where: Path) -> list[str]:
    if isinstance(value, list):
        return [str(n) for n in value]
    if isinstance(value, dict) and all(isinstance(k, int) for k in value):
        if sorted(value) != list(range(len(value))):
            raise DatasetError(f"{where}: 'names' keys must be 0..{len(value) - 1}, got {sorted(value)[:10]}")
        return [str(value[i]) for i in range(len(value))]
    raise DatasetError(f"{where}: 'names' must be a list or a mapping of class index to name")


# ------------------------------------------------------------------------------------------ locating
def yaml_file(root: Path) -> Path | None:
    if root.is_file():
        return root
    found = sorted(p for p in root.glob("*.y*ml") if p.suffix in (".yaml", ".yml")) if root.is_dir() else []
    preferred = [p for p in found if p.stem in ("data", "dataset")]
    return (preferred or found or [None])[0]


def resolve_yolo_split(root: Path, split: str) -> SplitPaths:
    """images folder + the YAML (or names file, or labels folder) of ``split``."""
    cfg = yaml_file(root)
    if cfg is not None:
        data = load_yaml(cfg)
        key = next((k for k in _SPLIT_ALIASES.get(split, (split,)) if data.get(k)), None)
        if key is None:
            raise DatasetError(f"{cfg}: no '{split}' entry (images folder of the {split} split)")
        source = data[key]
        if not isinstance(source, str):
            raise DatasetError(f"{cfg}: '{key}' must be one images folder, got {source!r}")
        # Relative entries resolve from the YAML's folder, as Ultralytics resolves them; ``cfg.parent`` may itself
        # be relative (``--data nopath``), so it is the base, never joined onto itself.
        base = Path(data["path"]) if isinstance(data.get("path"), str) else None
        base = cfg.parent if base is None else base if base.is_absolute() else cfg.parent / base
        images = base / source
        if not images.exists() and source.startswith("../"):  # Roboflow exports, as Ultralytics resolves them
            images = base / source[3:]
        if images.is_file():
            raise DatasetError(f"{cfg}: '{key}: {source}' is a list file; give an images folder instead")
        if not images.is_dir():
            raise DatasetError(f"{cfg}: images folder of '{key}' not found: {images}")
        return SplitPaths(images, cfg, format="yolo")
    for name in _SPLIT_ALIASES.get(split, (split,)):
        for images in (root / "images" / name, root / name / "images"):
            if images.is_dir():
                names = next((root / f for f in _NAMES_FILES if (root / f).is_file()), None)
                return SplitPaths(images, names or labels_dir(images), format="yolo")
    raise DatasetError(f"{root}: no YOLO images for split '{split}' (data.yaml, images/{split}/ or {split}/images/)")


def labels_dir(images: Path) -> Path:
    """Ultralytics' rule: the last ``images`` component of the path becomes ``labels``; else labels lie beside."""
    parts = list(images.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            return Path(*parts[:i], "labels", *parts[i + 1:])
    return images


def label_file(image: Path, images_dir: Path, labels_root: Path | None = None) -> Path:
    """The label file of ``image`` under ``images_dir``: the same relative path under ``labels_dir``, ``.txt``."""
    return ((labels_root or labels_dir(images_dir)) / image.relative_to(images_dir)).with_suffix(".txt")


def image_files(images_dir: Path) -> list[Path]:
    """The images of a split folder, recursively, sorted (their order gives the image ids)."""
    return sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def shared_label_files(images_dir: Path) -> dict[Path, list[Path]]:
    """``{label file: images}`` for every existing label file that two or more images of the split read
    (``x.jpg`` and ``x.png`` both take ``labels/x.txt``: usually an output written into the dataset)."""
    labels_root = labels_dir(images_dir)
    readers: dict[Path, list[Path]] = {}
    for image in image_files(images_dir):
        readers.setdefault(label_file(image, images_dir, labels_root), []).append(image)
    return {label: images for label, images in readers.items() if len(images) > 1 and label.is_file()}


def _class_names(paths: SplitPaths) -> list[str] | None:
    ann = Path(paths.annotations)
    if ann.suffix in (".yaml", ".yml"):
        data = load_yaml(ann)
        if "names" not in data:
            raise DatasetError(f"{ann}: no 'names' (the class names)")
        return _names(data["names"], ann)
    if ann.is_file():
        return [line.strip() for line in ann.read_text(encoding="utf-8").splitlines() if line.strip()]
    return None


# -------------------------------------------------------------------------------------------- reading
def parse_label_line(line: str) -> tuple[int, list[float]] | str:
    """``(class, [cx, cy, w, h])`` of one label line, or the reason it is unusable."""
    cols = line.split()
    if len(cols) < 5:
        return f"too few columns ({len(cols)}, need 'class cx cy w h')"
    try:
        values = [float(v) for v in cols[1:]]
        cls = float(cols[0])
    except ValueError:
        return "non-numeric value"
    if not cls.is_integer() or cls < 0:
        return f"class {cols[0]} is not a non-negative integer"
    if not all(math.isfinite(v) for v in values):
        return "non-finite coordinate"
    if len(values) > 4:  # a polygon: its bounding box (Ultralytics' segments2boxes)
        if len(values) % 2:
            return f"odd number of polygon coordinates ({len(values)})"
        xs, ys = values[0::2], values[1::2]
        values = [(min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)]
    if not all(-_TOLERANCE <= v <= 1 + _TOLERANCE for v in values):
        return "coordinates not normalised to [0, 1]"
    return int(cls), values


def polygon_of_line(line: str) -> list[float] | None:
    """The normalised ``[x1, y1, x2, y2, ...]`` of a label line that :func:`parse_label_line` accepted, when it is
    a polygon (more than 4 coordinates; that function refused odd counts, so it has 3 points or more), else
    None."""
    values = [float(v) for v in line.split()[1:]]
    return values if len(values) > 4 else None


def read_yolo(paths: SplitPaths, problems: Any) -> dict:
    """COCO dict of a YOLO split (see the module docstring); problems are reported per kind."""
    images_dir = Path(paths.images)
    names = _class_names(paths)
    files = image_files(images_dir)
    labels_root = labels_dir(images_dir)
    parsed: list[tuple[Path, list[tuple[int, list[float], list[float] | None]]]] = []  # (class, box, polygon)
    for image in files:
        label = label_file(image, images_dir, labels_root)
        rows, seen = [], set()
        if label.is_file():
            try:
                lines = label.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as err:
                problems.add("label files unreadable, images used as negatives", f"{label} ({err})")
                lines = []
            for n, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                row = parse_label_line(line)
                if isinstance(row, str):
                    problems.add(f"label lines dropped: {row}", f"{label}:{n}")
                    continue
                polygon = polygon_of_line(line)
                key = (row[0], tuple(polygon or row[1]))  # two polygons with one extent are two objects
                if key in seen:
                    problems.add("duplicate label lines dropped", f"{label}:{n}")
                else:
                    seen.add(key)
                    rows.append((row[0], row[1], polygon))
        parsed.append((image, rows))
    if names is None:  # no names anywhere: classes 0..max seen in every split's labels, so that splits agree
        found = [cls for f in labels_root.parent.rglob("*.txt") for cls in _classes_in(f)]
        names = [f"class_{i}" for i in range(max(found, default=-1) + 1)]
        warnings.warn(f"{images_dir}: no data.yaml or classes.txt; {len(names)} classes named class_<index>",
                      DatasetWarning, stacklevel=2)
    if not names:
        raise DatasetError(f"{paths.annotations}: no classes (empty 'names')")
    _check_names_cover(parsed, names, paths.annotations)
    return _to_coco(parsed, names, images_dir, problems)


def _check_names_cover(parsed: list, names: list[str], source: Path) -> None:
    """A stray class index (a typo line) is dropped with a warning in ``_to_coco``; but labels using several
    indices past ``names``, or many lines of one, mean the names list is short (a data.yaml naming 2 of 10
    classes would drop 85 % of the boxes): refused in one line."""
    classes = [row[0] for _, rows in parsed for row in rows]
    unknown = [c for c in classes if c >= len(names)]
    if len(set(unknown)) >= 2 or (unknown and len(unknown) >= 0.25 * len(classes)):
        raise DatasetError(f"{source}: names {len(names)} classes (0..{len(names) - 1}) but the labels use class "
                           f"indices up to {max(unknown)}: {len(unknown)} of {len(classes)} label lines would be "
                           "dropped; list every class in 'names'")


def _classes_in(label: Path) -> list[int]:
    rows = [parse_label_line(line) for line in label.read_text(errors="ignore").splitlines() if line.strip()]
    return [r[0] for r in rows if isinstance(r, tuple)]


def _to_coco(parsed: list, names: list[str], images_dir: Path, problems: Any) -> dict:
    images, boxes, segmentations = [], [], []
    for image_id, (image, rows) in enumerate(parsed, 1):
        try:
            w, h, orientation = image_header(image)
        except ImageLoadError as err:
            problems.add("unreadable images skipped", err)
            continue
        upright = (w, h) if orientation < 5 else (h, w)
        xyxy, labels, polygons = [], [], []
        for cls, (cx, cy, bw, bh), polygon in rows:
            if cls >= len(names):
                problems.add(f"label lines dropped: class index outside 0..{len(names) - 1}", f"{image.name}: {cls}")
                continue
            xyxy.append([(cx - bw / 2) * upright[0], (cy - bh / 2) * upright[1],
                         (cx + bw / 2) * upright[0], (cy + bh / 2) * upright[1]])
            labels.append(cls)
            polygons.append(None if polygon is None else _polygon_to_stored(polygon, upright, orientation, (w, h)))
        for cls, (x0, y0, x1, y1), polygon in zip(labels, upright_to_stored(xyxy, orientation, (w, h)), polygons):
            boxes.append((image_id, cls, [x0, y0, x1 - x0, y1 - y0], 0))
            segmentations.append(None if polygon is None else [polygon])
        images.append({"id": image_id, "file_name": image.relative_to(images_dir).as_posix(), "width": w, "height": h})
    return coco_dict(images, boxes, [{"id": i, "name": n} for i, n in enumerate(names)], segmentations)


def _polygon_to_stored(xy: list[float], upright: tuple[int, int], orientation: int,
                       stored: tuple[int, int]) -> list[float]:
    """Normalised ``[x1, y1, ...]`` of the upright image -> pixels of the stored one (the COCO frame), each
    point moved as a zero-size box by the boxes' own EXIF map."""
    points = [[x * upright[0], y * upright[1]] * 2 for x, y in zip(xy[0::2], xy[1::2])]
    return [v for p in upright_to_stored(points, orientation, stored) for v in p[:2]]
