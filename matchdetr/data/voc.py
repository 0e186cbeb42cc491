"""Pascal VOC XML datasets, read into a COCO dict (see ``formats.py``).

Layout: ``DIR/Annotations/ID.xml``, ``DIR/JPEGImages/ID.jpg``, ``DIR/ImageSets/Main/SPLIT.txt`` (one ID per
line); ``DIR`` may also be a folder holding ``VOC2007/`` or ``VOCdevkit/VOC2007/``. Split ``train`` reads
``train.txt`` (else ``trainval.txt``), ``val`` reads ``val.txt`` (else ``test.txt``). Classes come from
``DIR/classes.txt`` (one per line, ids from 1), else the 20 standard VOC classes when every name is one of
them, else the sorted names found in all of ``Annotations/``.

VOC corners are 1-based pixel indices, inclusive: ``[xmin, xmax]`` covers pixels ``xmin-1 .. xmax-1`` in
0-based continuous coordinates, so the COCO box is ``[xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]``
(as Detectron2 reads VOC). ``difficult`` objects become COCO crowd regions: not trained on, and detections on
them are neither rewarded nor penalised by the COCO metrics, as VOC's own evaluation ignores them.

XML is untrusted input: a file with a DOCTYPE or ENTITY declaration (entity-expansion "billion laughs",
external entities) is refused before parsing, and ``defusedxml`` is used when it is installed.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from .common import IMAGE_SUFFIXES, DatasetError, DatasetWarning, SplitPaths, coco_dict, image_header
from .images import ImageLoadError

try:  # pragma: no cover - optional hardening
    from defusedxml.ElementTree import fromstring as _fromstring
except ImportError:
    from xml.etree.ElementTree import fromstring as _fromstring

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
_SPLIT_FILES = {"train": ("train", "trainval"), "val": ("val", "test")}
_DECLARATION = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


class XmlError(ValueError):
    """One annotation file that cannot be used; the message names the reason."""


def voc_root(root: Path) -> Path | None:
    for cand in (root, root / "VOC2007", root / "VOC2012", root / "VOCdevkit" / "VOC2007", root / "VOCdevkit" / "VOC2012"):
        if (cand / "Annotations").is_dir() and (cand / "JPEGImages").is_dir():
            return cand
    return None


def resolve_voc_split(root: Path, split: str) -> SplitPaths:
    base = voc_root(root)
    if base is None:
        raise DatasetError(f"{root}: not a VOC folder (Annotations/ and JPEGImages/)")
    tried = [base / "ImageSets" / "Main" / f"{name}.txt" for name in _SPLIT_FILES.get(split, (split,))]
    found = next((p for p in tried if p.is_file()), None)
    if found is None:
        raise DatasetError(f"VOC split '{split}': no image list; tried {', '.join(map(str, tried))}")
    return SplitPaths(base / "JPEGImages", found, format="voc")


def parse_voc_xml(data: bytes) -> dict:
    """``{"filename", "size": (w, h) or None, "objects": [(name, [xmin, ymin, xmax, ymax], difficult)]}``."""
    if _DECLARATION.search(data):
        raise XmlError("DOCTYPE/ENTITY declarations are refused (entity expansion)")
    try:
        root = _fromstring(data)
    except (ParseError, ValueError) as err:
        raise XmlError(f"not well-formed XML ({err})") from None
    except Exception as err:  # defusedxml's own refusals
        raise XmlError(f"refused ({type(err).__name__})") from None
    if root.tag != "annotation":
        raise XmlError(f"root element is <{root.tag}>, not <annotation>")
    size, objects = None, []
    w, h = _number(root, "size/width"), _number(root, "size/height")
    if w and h and w > 0 and h > 0:
        size = (int(w), int(h))
    for obj in root.findall("object"):
        name = (obj.findtext("name") or "").strip()
        corners = [_number(obj, f"bndbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax")]
        difficult = (obj.findtext("difficult") or "0").strip() in ("1", "true")
        objects.append((name, corners, difficult))
    return {"filename": (root.findtext("filename") or "").strip(), "size": size, "objects": objects}


def _number(node: Element, path: str) -> float | None:
    text = node.findtext(path)
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _read_xml(path: Path) -> dict:
    try:
        return parse_voc_xml(path.read_bytes())
    except OSError as err:
        raise XmlError(f"cannot read ({err.strerror or err})") from None


def _class_names(base: Path, parsed: list[dict]) -> list[str]:
    listed = base / "classes.txt"
    if listed.is_file():
        return [l.strip() for l in listed.read_text(encoding="utf-8").splitlines() if l.strip()]
    names = {o[0] for p in parsed for o in p["objects"]}
    if names <= set(VOC_CLASSES):
        return list(VOC_CLASSES)
    for xml in sorted((base / "Annotations").glob("*.xml")):  # every split, so that splits agree
        try:
            names |= {o[0] for o in _read_xml(xml)["objects"]}
        except XmlError:
            continue
    names.discard("")
    warnings.warn(f"{base}: no classes.txt; {len(names)} classes from the XML files, sorted: "
                  f"{', '.join(sorted(names)[:10])}{', ...' if len(names) > 10 else ''}", DatasetWarning, stacklevel=3)
    return sorted(names)


def _image_file(images: Path, stem: str, filename: str) -> Path | None:
    for cand in ([images / filename] if filename else []) + [images / f"{stem}.jpg"]:
        if cand.is_file():
            return cand
    return next((p for p in sorted(images.glob(f"{stem}.*")) if p.suffix.lower() in IMAGE_SUFFIXES), None)


def read_voc(paths: SplitPaths, problems: Any) -> dict:
    """COCO dict of a VOC split (see the module docstring); problems are reported per kind."""
    images_dir, listing = Path(paths.images), Path(paths.annotations)
    base = images_dir.parent
    try:
        ids = [line.split()[0] for line in listing.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{listing}: cannot read image list ({err})") from None
    parsed = []
    for stem in dict.fromkeys(ids):  # a repeated id is one image
        xml = base / "Annotations" / f"{stem}.xml"
        try:
            parsed.append((stem, _read_xml(xml)))
        except XmlError as err:
            problems.add("annotation files refused, images skipped", f"{xml}: {err}")
    if len(dict.fromkeys(ids)) != len(ids):
        problems.add("repeated ids in the image list, read once", listing)
    names = _class_names(base, [p for _, p in parsed])
    category = {n: i + 1 for i, n in enumerate(names)}
    images, boxes = [], []
    for image_id, (stem, ann) in enumerate(parsed, 1):
        path = _image_file(images_dir, stem, ann["filename"])
        if path is None:
            problems.add("image files missing on disk, images skipped", images_dir / (ann["filename"] or f"{stem}.jpg"))
            continue
        size = ann["size"]
        if size is None:
            try:
                size = image_header(path)[:2]
            except ImageLoadError as err:
                problems.add("unreadable images skipped", err)
                continue
        for name, corners, difficult in ann["objects"]:
            if name not in category:
                problems.add("objects dropped: class not in the class list", f"{stem}: {name or '<no name>'}")
            elif any(c is None for c in corners):
                problems.add("objects dropped: missing or non-numeric bndbox", stem)
            else:
                x0, y0, x1, y1 = corners
                boxes.append((image_id, category[name], [x0 - 1, y0 - 1, x1 - x0 + 1, y1 - y0 + 1], int(difficult)))
        images.append({"id": image_id, "file_name": path.relative_to(images_dir).as_posix(),
                       "width": size[0], "height": size[1]})
    return coco_dict(images, boxes, [{"id": i, "name": n} for n, i in category.items()])
