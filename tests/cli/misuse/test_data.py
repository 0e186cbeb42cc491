"""The dataset readers given bad data: each case warns or fails in one line naming the file or id; fuzzed readers."""

from __future__ import annotations

import io
import json
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader

from matchdetr.boxes import cxcywh_to_xyxy
from matchdetr.config import DataConfig
from matchdetr.data.coco import CocoDetection, DatasetError, DatasetWarning, SplitPaths
from matchdetr.data.collate import collate
from matchdetr.data.images import _TRANSPOSE, exif_transform_boxes, load_rgb
from matchdetr.data.transforms import build_transforms
from matchdetr.data.voc import XmlError, parse_voc_xml
from matchdetr.data.yolo import parse_label_line, parse_simple_yaml
from matchdetr.engine.coco_eval import EvalInputError, evaluate_detections

# test_size 40 with a 40x50 (w x h) upright image leaves it unresized, so pixel positions can be compared.
CFG = DataConfig(test_size=40, test_max_size=1000)
CATS = [{"id": 1, "name": "thing"}, {"id": 2, "name": "other"}]
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])


def save_jpeg(root: Path, name: str, size: tuple[int, int] = (40, 50), **kw: object) -> Path:
    (root / "images").mkdir(exist_ok=True)
    path = root / "images" / name
    Image.new("RGB", size, (120, 80, 40)).save(path, "JPEG", **kw)
    return path


def entry(image_id: int, name: str, size: tuple[int, int] = (40, 50)) -> dict:
    return {"id": image_id, "file_name": name, "width": size[0], "height": size[1]}


def ann(ann_id: int, image_id: int, bbox: list, category_id: int = 1, **kw: object) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox, **kw}


def write_json(root: Path, images: list[dict], anns: list[dict], cats: list[dict] = CATS) -> SplitPaths:
    (root / "images").mkdir(exist_ok=True)
    (root / "ann.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return SplitPaths(root / "images", root / "ann.json")


def dataset(paths: SplitPaths) -> CocoDetection:
    return CocoDetection(paths, build_transforms(CFG, train=False))


def iterate(ds: CocoDetection) -> int:
    """Run the real multi-worker DataLoader over the dataset; returns the number of samples seen."""
    seen = 0
    for batch in DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate):
        assert torch.isfinite(batch.images).all()
        assert all(((t.boxes >= 0) & (t.boxes <= 1)).all() for t in batch.targets)
        seen += len(batch)
    return seen


def simple(root: Path, names: list[str], anns: list[dict] | None = None) -> SplitPaths:
    """Readable JPEGs for ``names`` (ids 1..), one valid box each unless ``anns`` is given."""
    for name in names:
        save_jpeg(root, name)
    default = [ann(100 + i, i + 1, [5, 5, 10, 10]) for i in range(len(names))]
    return write_json(root, [entry(i + 1, n) for i, n in enumerate(names)], default if anns is None else anns)


# -------------------------------------------------------------------------------------------- construction
@pytest.mark.parametrize(
    "text, message",
    [("{not json", "invalid JSON"), ("[]", "top level"), ('{"images": [], "annotations": []}', "'categories'")],
)
def test_invalid_annotation_json(tmp_path: Path, text: str, message: str) -> None:
    paths = write_json(tmp_path, [], [])
    paths.annotations.write_text(text)
    with pytest.raises(DatasetError, match=f"ann.json: .*{message}"):
        dataset(paths)


def test_missing_annotation_json(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError, match="nope.json: cannot read"):
        dataset(SplitPaths(tmp_path / "images", tmp_path / "nope.json"))


def test_missing_image_file_skipped(tmp_path: Path) -> None:
    save_jpeg(tmp_path, "a.jpg")
    paths = write_json(tmp_path, [entry(1, "a.jpg"), entry(2, "gone.jpg")], [ann(5, 2, [1, 1, 5, 5])])
    with pytest.warns(DatasetWarning, match="1 image files missing.*gone.jpg"):
        ds = dataset(paths)
    assert ds.image_ids == [1] and iterate(ds) == 1


def test_empty_dataset_is_an_error(tmp_path: Path) -> None:
    paths = write_json(tmp_path, [entry(1, "gone.jpg")], [])
    with pytest.warns(DatasetWarning, match="gone.jpg"), pytest.raises(DatasetError, match="ann.json: no usable"):
        dataset(paths)
    with pytest.raises(DatasetError, match="ann.json: no usable images"):
        dataset(write_json(tmp_path, [], []))


def test_unknown_image_id(tmp_path: Path) -> None:
    ds_paths = simple(tmp_path, ["a.jpg"], [ann(10, 1, [1, 1, 5, 5]), ann(77, 999, [1, 1, 5, 5])])
    with pytest.warns(DatasetWarning, match=r"ann.json: 1 annotations dropped: unknown image id .*\(77\)"):
        ds = dataset(ds_paths)
    assert len(ds[0][1]) == 1 and iterate(ds) == 1


def test_unknown_category_aggregated(tmp_path: Path) -> None:
    anns = [ann(10, 1, [1, 1, 5, 5])] + [ann(70 + i, 1, [1, 1, 5, 5], category_id=42) for i in range(7)]
    shown = r"\(70, 71, 72, 73, 74, \.\.\.\)"  # five ids, then the count says the rest
    with pytest.warns(DatasetWarning, match=rf"7 annotations dropped: unknown category .*{shown}"):
        ds = dataset(simple(tmp_path, ["a.jpg"], anns))
    assert ds[0][1].labels.tolist() == [0] and iterate(ds) == 1


def test_malformed_and_non_positive_boxes(tmp_path: Path) -> None:
    bad = {80: [1, 1, 0, 5], 81: [1, 1, 5, -3], 82: [1, 2, 3], 83: [1, float("nan"), 5, 5], 84: "abc"}
    anns = [ann(10, 1, [1, 1, 5, 5])] + [ann(i, 1, b) for i, b in bad.items()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = dataset(simple(tmp_path, ["a.jpg"], anns))
    text = "\n".join(str(w.message) for w in caught if issubclass(w.category, DatasetWarning))
    assert "non-positive width/height (annotation ids) (80, 81)" in text
    assert "2 annotations dropped: malformed bbox (annotation ids) (82, 84)" in text
    assert "1 annotations dropped: non-finite bbox (annotation ids) (83)" in text
    assert len(ds[0][1]) == 1 and iterate(ds) == 1


def test_box_outside_image_clipped_or_dropped(tmp_path: Path) -> None:
    # image 40 wide, 50 high: 90 overshoots by 20 px (clipped), 91 lies beyond it (dropped), 92 by 0.5 (silent)
    anns = [ann(90, 1, [30, 40, 30, 30]), ann(91, 1, [60, 10, 5, 5]), ann(92, 1, [-0.5, 0, 10, 10])]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = dataset(simple(tmp_path, ["a.jpg"], anns))
    text = "\n".join(str(w.message) for w in caught)
    assert "1 annotations clipped: bbox partly outside its image (annotation ids) (90)" in text
    assert "1 annotations dropped: bbox entirely outside its image (annotation ids) (91)" in text
    target = ds[0][1]
    boxes = cxcywh_to_xyxy(target.boxes) * torch.tensor([40, 50, 40, 50])
    assert torch.allclose(boxes, torch.tensor([[30.0, 40, 40, 50], [0, 0, 9.5, 10]]))
    assert iterate(ds) == 1


def test_crowd_ignored_silently_and_image_without_annotations_kept(tmp_path: Path) -> None:
    anns = [ann(10, 1, [1, 1, 5, 5]), ann(11, 1, [2, 2, 5, 5], iscrowd=1)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)
        ds = dataset(simple(tmp_path, ["a.jpg", "negative.jpg"], anns))
        assert ds.image_ids == [1, 2] and len(ds[0][1]) == 1
        empty = ds[1][1]
    assert empty.boxes.shape == (0, 4) and empty.labels.shape == (0,) and empty.labels.dtype == torch.int64
    assert iterate(ds) == 2


# --------------------------------------------------------------------------------------------- load time
def _bad_bytes(kind: str) -> bytes:
    noise = np.random.default_rng(0).integers(0, 255, (50, 40, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "JPEG")
    data = buf.getvalue()
    return {
        "truncated": data[: len(data) // 2],
        "corrupt_header": data[:2] + bytes(300) + data[302:],
        "zero_byte": b"",
        "not_an_image": b"this is a text file that happens to be named .jpg\n",
    }[kind]


@pytest.mark.parametrize("kind", ["truncated", "corrupt_header", "zero_byte", "not_an_image"])
def test_undecodable_image_substituted(tmp_path: Path, kind: str) -> None:
    paths = simple(tmp_path, ["a.jpg", "bad.jpg", "c.jpg"])
    (tmp_path / "images" / "bad.jpg").write_bytes(_bad_bytes(kind))
    ds = dataset(paths)  # construction does not decode: the file exists, so it is kept until loaded
    with pytest.warns(DatasetWarning, match=r"bad.jpg: .*image skipped"):
        image, target = ds[1]
    assert target.image_id == 3 and image.shape == (3, 50, 40)
    assert iterate(ds) == 3


def test_no_readable_image_is_a_clear_error(tmp_path: Path) -> None:
    paths = simple(tmp_path, ["a.jpg", "b.jpg"])
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / "images" / name).write_bytes(b"")
    ds = dataset(paths)
    with pytest.warns(DatasetWarning), pytest.raises(DatasetError, match="ann.json: no readable image"):
        ds[0]


def _write_mode(path: Path, mode: str) -> tuple[int, int, int]:
    """Write a 40x50 image of ``mode``; return the RGB expected at pixel (5, 5)."""
    if mode == "L":
        Image.new("L", (40, 50), 100).save(path, "JPEG")
        return 100, 100, 100
    if mode == "RGBA":  # left transparent (composited over white), right opaque red
        img = Image.new("RGBA", (40, 50), (0, 0, 0, 0))
        img.paste((200, 10, 10, 255), (20, 0, 40, 50))
        img.save(path, "PNG")
        return 255, 255, 255
    if mode == "P":
        img = Image.new("P", (40, 50), 1)
        img.putpalette([0, 0, 0, 30, 160, 90] + [0] * 762)
        img.save(path, "PNG")
        return 30, 160, 90
    if mode == "I;16":  # 1000/65535 -> 4: scaled by the 16-bit range, not clipped to 255
        Image.fromarray(np.full((50, 40), 1000, dtype=np.uint16)).save(path, "PNG")
        return 4, 4, 4
    assert mode == "CMYK"
    Image.new("CMYK", (40, 50), (0, 255, 255, 0)).save(path, "JPEG", quality=95)
    return 255, 0, 0


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK"])
def test_image_modes_load_as_rgb(tmp_path: Path, mode: str) -> None:
    paths = simple(tmp_path, ["odd.img"])
    expected = _write_mode(tmp_path / "images" / "odd.img", mode)
    with Image.open(tmp_path / "images" / "odd.img") as raw:
        assert raw.mode == mode  # the fixture really is the mode under test
    rgb = load_rgb(tmp_path / "images" / "odd.img")
    assert rgb.mode == "RGB" and rgb.size == (40, 50)
    assert np.abs(np.array(rgb.getpixel((5, 5))) - expected).max() <= 3
    if mode == "RGBA":
        assert rgb.getpixel((30, 5)) == (200, 10, 10)
    ds = dataset(paths)
    assert ds[0][0].shape == (3, 50, 40) and iterate(ds) == 1


def _bright_xyxy(image: torch.Tensor) -> torch.Tensor:
    pixels = image * torch.tensor(CFG.std).view(3, 1, 1) + torch.tensor(CFG.mean).view(3, 1, 1)
    ys, xs = torch.nonzero(pixels.mean(0) > 0.5, as_tuple=True)
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)


@pytest.mark.parametrize("orientation", [6, 8])
@pytest.mark.parametrize("json_frame", ["stored", "upright"])
def test_exif_rotated_jpeg_boxes_land_on_object(tmp_path: Path, orientation: int, json_frame: str) -> None:
    # Stored pixels 50 wide x 40 high with a white block; EXIF 6/8 turns them into a 40x50 upright image.
    raw = Image.new("RGB", (50, 40))
    ImageDraw.Draw(raw).rectangle((5, 10, 19, 29), fill=(255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = orientation
    (tmp_path / "images").mkdir()
    raw.save(tmp_path / "images" / "rot.jpg", "JPEG", exif=exif, quality=95)
    if json_frame == "stored":  # the COCO convention: size and boxes of the pixels as stored
        size, bbox = (50, 40), [5, 10, 15, 20]
    else:  # a tool that applied EXIF first: upright size and boxes
        upright = raw.transpose(Image.Transpose.ROTATE_270 if orientation == 6 else Image.Transpose.ROTATE_90)
        x0, y0, x1, y1 = upright.getbbox()
        size, bbox = upright.size, [x0, y0, x1 - x0, y1 - y0]
    ds = dataset(write_json(tmp_path, [entry(1, "rot.jpg", size)], [ann(1, 1, bbox)]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image, target = ds[0]
    notes = [str(w.message) for w in caught]
    if json_frame == "stored":
        assert any("rot.jpg" in n and f"EXIF orientation {orientation}" in n for n in notes), notes
    else:
        assert not notes
    assert image.shape == (3, 50, 40) and target.orig_size == (50, 40)
    box = cxcywh_to_xyxy(target.boxes[0]) * torch.tensor([40, 50, 40, 50])
    assert torch.allclose(box, _bright_xyxy(image), atol=1.0), (box, _bright_xyxy(image))
    assert iterate(ds) == 1


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_box_mapping_matches_pil(orientation: int) -> None:
    raw = Image.new("L", (50, 40))
    ImageDraw.Draw(raw).rectangle((5, 10, 19, 29), fill=255)
    upright = raw.transpose(_TRANSPOSE[orientation])
    mapped = exif_transform_boxes(torch.tensor([[5.0, 10, 20, 30]]), orientation, (50, 40))
    assert mapped.tolist() == [list(map(float, upright.getbbox()))]


def test_json_size_mismatch_rescales_boxes(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 50))
    ImageDraw.Draw(img).rectangle((10, 20, 29, 39), fill=(255, 255, 255))
    (tmp_path / "images").mkdir()
    img.save(tmp_path / "images" / "small.png")
    # The JSON describes the image at twice its size (e.g. it was downscaled after labelling).
    ds = dataset(write_json(tmp_path, [entry(1, "small.png", (80, 100))], [ann(1, 1, [20, 40, 40, 40])]))
    with pytest.warns(DatasetWarning, match=r"small.png: JSON size 80x100 != decoded 40x50; boxes rescaled"):
        image, target = ds[0]
    box = cxcywh_to_xyxy(target.boxes[0]) * torch.tensor([40, 50, 40, 50])
    assert torch.allclose(box, torch.tensor([10.0, 20, 30, 40])) and iterate(ds) == 1


def test_malformed_image_entry_skipped(tmp_path: Path) -> None:
    save_jpeg(tmp_path, "a.jpg")
    save_jpeg(tmp_path, "b.jpg")
    paths = write_json(tmp_path, [entry(1, "a.jpg"), {"id": 2, "file_name": "b.jpg"}], [])
    with pytest.warns(DatasetWarning, match=r"1 malformed image entries skipped .*\(2\)"):
        ds = dataset(paths)
    assert ds.image_ids == [1] and iterate(ds) == 1


# ----------------------------------------------------------------------- extreme images, duplicate ids
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
