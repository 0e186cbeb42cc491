"""The rest of the bad-input corpus of issue #9 item 6 (the common cases are in test_bad_data.py), and
hypothesis fuzzing of the annotation readers: COCO JSON, YOLO label lines, VOC XML.

Every input either constructs a dataset whose samples are finite and inside the image, warns naming the item,
or raises the one-line DatasetError; nothing else escapes."""

from __future__ import annotations

import json
import struct
import warnings
import zlib
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from test_unreadable_data import CFG, ann, dataset, entry, iterate, save_jpeg, simple, write_json

from matchdetr.config import DataConfig
from matchdetr.data.coco import CocoDetection, DatasetError, DatasetWarning, SplitPaths
from matchdetr.data.transforms import build_transforms
from matchdetr.data.voc import XmlError, parse_voc_xml
from matchdetr.data.yolo import parse_label_line, parse_simple_yaml
from matchdetr.engine.coco_eval import EvalInputError, evaluate_detections

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])


def test_one_pixel_image_trains_and_evaluates(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    Image.new("RGB", (1, 1), (200, 10, 10)).save(tmp_path / "images" / "dot.png")
    paths = write_json(tmp_path, [entry(1, "dot.png", (1, 1))], [ann(1, 1, [0, 0, 1, 1])])
    train = CocoDetection(paths, build_transforms(DataConfig(train_scales=[32, 48], train_max_size=64,
                                                             crop_resize_scales=[32], crop_min=16, crop_max=24), True))
    for epoch in range(3):  # random crops and flips of a 1x1 image
        train.set_epoch(epoch)
        image, target = train[0]
        assert torch.isfinite(image).all() and image.shape[1] >= 1 and image.shape[2] >= 1
        assert ((target.boxes >= 0) & (target.boxes <= 1)).all()
    ds = dataset(paths)
    assert ds[0][0].shape == (3, 40, 40) and iterate(ds) == 1


def test_20000_pixel_side(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    Image.new("RGB", (20000, 40), (90, 90, 90)).save(tmp_path / "images" / "strip.png")
    ds = dataset(write_json(tmp_path, [entry(1, "strip.png", (20000, 40))], [ann(1, 1, [10000, 0, 5000, 40])]))
    image, target = ds[0]
    assert tuple(image.shape[1:]) == (2, CFG.test_max_size)  # the longer side capped, the shorter one >= 1 px
    assert torch.allclose(target.boxes, torch.tensor([[0.625, 0.5, 0.25, 1.0]]), atol=1e-3) and iterate(ds) == 1


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims ``width x height`` (the data is a stub): what a decompression bomb looks like."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_20000_by_20000_image_is_skipped_not_decoded(tmp_path: Path) -> None:
    paths = simple(tmp_path, ["a.jpg", "huge.png"])
    _png_header_only(tmp_path / "images" / "huge.png", 20000, 20000)
    ds = dataset(paths)
    with pytest.warns(DatasetWarning, match=r"huge.png: cannot decode image \(.*exceeds limit.*image skipped"):
        image, target = ds[1]
    assert target.image_id == 1 and iterate(ds) == 2


def test_duplicate_annotation_ids_are_refused(tmp_path: Path) -> None:
    paths = simple(tmp_path, ["a.jpg"], [ann(5, 1, [1, 1, 5, 5]), ann(5, 1, [10, 10, 5, 5])])
    with pytest.raises(DatasetError, match=r"ann.json: duplicate annotation id 5$"):
        dataset(paths)
    gt = json.loads(paths.annotations.read_text())
    with pytest.raises(EvalInputError, match="duplicate annotation id 5"):  # eval would otherwise lose a box
        evaluate_detections(gt, [])


def test_duplicate_image_ids_are_refused(tmp_path: Path) -> None:
    save_jpeg(tmp_path, "a.jpg")
    with pytest.raises(DatasetError, match="duplicate image id 1"):
        dataset(write_json(tmp_path, [entry(1, "a.jpg"), entry(1, "a.jpg")], []))


def test_annotations_missing_keys_are_dropped_by_id(tmp_path: Path) -> None:
    anns = [ann(1, 1, [1, 1, 5, 5]), {"id": 2, "image_id": 1, "bbox": [1, 1, 5, 5]}, {"id": 3, "image_id": 1, "category_id": 1}]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = dataset(simple(tmp_path, ["a.jpg"], anns))
    text = "\n".join(str(w.message) for w in caught)
    assert "unknown category id (annotation ids) (2)" in text and "malformed bbox (annotation ids) (3)" in text
    assert len(ds[0][1]) == 1


def test_binary_file_as_annotation_json(tmp_path: Path) -> None:
    paths = write_json(tmp_path, [], [])
    paths.annotations.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)))
    with pytest.raises(DatasetError, match=r"ann.json: (not UTF-8 text|invalid JSON)"):
        dataset(paths)


# ------------------------------------------------------------------------------------------------ fuzzing
_junk = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True),
                  st.text(max_size=4), st.lists(st.integers(0, 3), max_size=3))
_coord = st.one_of(st.floats(-50, 100, allow_nan=False), st.sampled_from([float("nan"), float("inf"), -1e9, 0.0]),
                   st.integers(-10, 60), st.booleans(), st.text(max_size=2))


def _maybe(value, junk=_junk):
    return st.one_of(st.just(value), junk) if not isinstance(value, st.SearchStrategy) else st.one_of(value, junk)


_image = st.fixed_dictionaries({"id": _maybe(st.integers(1, 3)), "file_name": _maybe(st.sampled_from(["a.jpg", "gone.jpg"])),
                                "width": _maybe(st.sampled_from([40, 0, -3])), "height": _maybe(st.just(50))})
_annotation = st.one_of(_junk, st.fixed_dictionaries(
    {"id": _maybe(st.integers(1, 1000)), "image_id": _maybe(st.integers(0, 3)), "category_id": _maybe(st.integers(0, 3)),
     "bbox": st.one_of(st.lists(_coord, min_size=3, max_size=5), _junk), "iscrowd": st.sampled_from([0, 0, 0, 1])}))
_category = st.one_of(_junk, st.fixed_dictionaries({"id": _maybe(st.integers(1, 3)), "name": _maybe(st.text(max_size=3))}))


@FUZZ
@given(images=st.lists(st.one_of(_image, _junk), max_size=4), anns=st.lists(_annotation, max_size=8),
       cats=st.one_of(st.lists(_category, max_size=3), _junk), drop=st.sampled_from([None, "images", "categories"]))
def test_fuzz_coco_json(tmp_path_factory, images, anns, cats, drop) -> None:
    root = tmp_path_factory.mktemp("fuzz")
    save_jpeg(root, "a.jpg")
    data = {"images": images, "annotations": anns, "categories": cats}
    data.pop(drop, None)
    (root / "ann.json").write_text(json.dumps(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        try:
            ds = dataset(SplitPaths(root / "images", root / "ann.json"))
        except DatasetError as err:
            assert "\n" not in str(err) and str(root / "ann.json") in str(err)
            return
        for i in range(len(ds)):
            image, target = ds[i]
            assert torch.isfinite(image).all() and torch.isfinite(target.boxes).all()
            assert ((target.boxes >= 0) & (target.boxes <= 1)).all()
            assert ((target.labels >= 0) & (target.labels < len(ds.label_map))).all()


@FUZZ
@given(st.one_of(st.text(max_size=60), st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 99),
                                                          st.text(max_size=3)), max_size=12).map(lambda v: " ".join(map(str, v)))))
def test_fuzz_yolo_label_line(line: str) -> None:
    row = parse_label_line(line)
    if isinstance(row, str):
        return  # the reason goes into a warning naming file:line
    cls, box = row
    assert cls >= 0 and len(box) == 4 and all(-0.01 <= v <= 1.01 or (i >= 2 and v >= 0) for i, v in enumerate(box))


@FUZZ
@given(st.text(max_size=200))
def test_fuzz_simple_yaml(text: str) -> None:
    try:
        assert isinstance(parse_simple_yaml(text), dict)
    except DatasetError as err:
        assert "\n" not in str(err)


_xml_piece = st.sampled_from(["<annotation>", "</annotation>", "<object>", "</object>", "<name>cat</name>", "<bndbox>",
                              "</bndbox>", "<xmin>1</xmin>", "<ymax>x</ymax>", "<size><width>-4</width></size>",
                              "<!DOCTYPE a>", "<!ENTITY b 'c'>", "&amp;", "&b;", "<difficult>1</difficult>", "<![CDATA[x]]>"])


@FUZZ
@given(st.one_of(st.lists(st.one_of(_xml_piece, st.text(max_size=5)), max_size=14).map("".join), st.binary(max_size=80)))
def test_fuzz_voc_xml(data) -> None:
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    try:
        out = parse_voc_xml(raw)
    except XmlError as err:
        assert "\n" not in str(err)
        return
    assert set(out) == {"filename", "size", "objects"}
    for name, corners, difficult in out["objects"]:
        assert isinstance(name, str) and len(corners) == 4 and isinstance(difficult, bool)
