"""Write a COCO-format dataset as a YOLO txt folder or a Pascal VOC folder (``matchdetr synth --format``).

Images are hard-linked when the file system allows it (copied otherwise). Boxes are written with full float
precision, so reading the copy back (``formats.py``) gives the same boxes: the YOLO, VOC and COCO copies of a
dataset score the same predictions to the same AP. Crowd annotations have no YOLO form and are left out;
in VOC they become ``difficult`` objects.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from xml.sax.saxutils import escape

from ..io.files import atomic_write_text


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _load(ann_file: Path) -> tuple[dict, list[dict], dict[int, list[dict]]]:
    data = json.loads(Path(ann_file).read_text(encoding="utf-8"))
    by_image: dict[int, list[dict]] = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    return data, sorted(data["categories"], key=lambda c: c["id"]), by_image


def coco_to_yolo(splits: dict[str, tuple[Path, Path]], out_dir: str | os.PathLike) -> Path:
    """``{split: (images_dir, instances_json)}`` -> ``OUT/images/SPLIT``, ``OUT/labels/SPLIT``, ``OUT/data.yaml``.

    Class index = position of the category in id order. Returns the YAML path.
    """
    out = Path(out_dir)
    names: list[str] = []
    for split, (images_dir, ann_file) in splits.items():
        data, cats, by_image = _load(ann_file)
        index = {c["id"]: i for i, c in enumerate(cats)}
        names = [str(c["name"]) for c in cats]
        for img in data["images"]:
            src = Path(images_dir) / img["file_name"]
            rel = Path(img["file_name"])
            _link(src, out / "images" / split / rel)
            w, h = float(img["width"]), float(img["height"])
            lines = []
            for a in by_image.get(img["id"], []):
                if a.get("iscrowd", 0):
                    continue
                x, y, bw, bh = (float(v) for v in a["bbox"])
                lines.append(f"{index[a['category_id']]} {(x + bw / 2) / w!r} {(y + bh / 2) / h!r} {bw / w!r} {bh / h!r}")
            label = (out / "labels" / split / rel).with_suffix(".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("".join(l + "\n" for l in lines))
    yaml = ["path: .", *(f"{s}: images/{s}" for s in splits), "names:", *(f"  {i}: {json.dumps(n)}" for i, n in enumerate(names))]
    atomic_write_text(out / "data.yaml", "\n".join(yaml) + "\n")
    return out / "data.yaml"


def _voc_xml(file_name: str, w: int, h: int, objects: list[tuple[str, list[float], int]]) -> str:
    parts = [f"<annotation><folder>JPEGImages</folder><filename>{escape(file_name)}</filename>",
             f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"]
    for name, (x0, y0, x1, y1), difficult in objects:
        parts.append(f"<object><name>{escape(name)}</name><difficult>{difficult}</difficult><bndbox>"
                     f"<xmin>{x0!r}</xmin><ymin>{y0!r}</ymin><xmax>{x1!r}</xmax><ymax>{y1!r}</ymax></bndbox></object>")
    return "\n".join(parts) + "</annotation>\n"


def coco_to_voc(splits: dict[str, tuple[Path, Path]], out_dir: str | os.PathLike) -> Path:
    """``{split: (images_dir, instances_json)}`` -> ``OUT/{JPEGImages,Annotations,ImageSets/Main}`` and
    ``OUT/classes.txt`` (categories in id order). File names get a ``SPLIT_`` prefix, since VOC keeps every
    split's images in one folder. Returns ``OUT``."""
    out = Path(out_dir)
    names: list[str] = []
    for split, (images_dir, ann_file) in splits.items():
        data, cats, by_image = _load(ann_file)
        name_of = {c["id"]: str(c["name"]) for c in cats}
        names = [str(c["name"]) for c in cats]
        stems = []
        for img in data["images"]:
            rel = Path(img["file_name"])
            stem = f"{split}_{rel.with_suffix('').as_posix().replace('/', '_')}"
            file_name = stem + rel.suffix
            _link(Path(images_dir) / rel, out / "JPEGImages" / file_name)
            objects = []
            for a in by_image.get(img["id"], []):
                x, y, bw, bh = (float(v) for v in a["bbox"])
                objects.append((name_of[a["category_id"]], [x + 1, y + 1, x + bw, y + bh], int(bool(a.get("iscrowd", 0)))))
            xml = out / "Annotations" / f"{stem}.xml"
            xml.parent.mkdir(parents=True, exist_ok=True)
            xml.write_text(_voc_xml(file_name, int(img["width"]), int(img["height"]), objects), encoding="utf-8")
            stems.append(stem)
        atomic_write_text(out / "ImageSets" / "Main" / f"{split}.txt", "".join(s + "\n" for s in stems))
    atomic_write_text(out / "classes.txt", "".join(n + "\n" for n in names))
    return out


def convert_dataset(root: str | os.PathLike, fmt: str, out_dir: str | os.PathLike, splits: tuple[str, ...] = ("train", "val")) -> Path:
    """Convert the COCO-layout dataset ``root`` (``SPLIT/`` + ``annotations/instances_SPLIT.json``) to ``fmt``."""
    from .coco import resolve_split

    found = {}
    for s in splits:
        paths = resolve_split(root, s)
        if paths.format != "coco":
            raise ValueError(f"{root}: is a {paths.format} dataset; converting from COCO layout only")
        found[s] = (paths.images, paths.annotations)
    if fmt == "yolo":
        return coco_to_yolo(found, out_dir)
    if fmt == "voc":
        return coco_to_voc(found, out_dir)
    raise ValueError(f"unknown dataset format '{fmt}' (yolo or voc)")
