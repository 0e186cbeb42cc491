"""YOLO txt and Pascal VOC XML datasets (issue #8 item 5; bad-input cases of issue #9 item 6).

The YOLO and VOC copies of the synthetic set score the same predictions to the same COCO AP as the COCO copy;
train and eval accept them through ``--data DIR``; broken label files warn with the file and line."""

from __future__ import annotations

import json
import random
import re
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import MICRO

from matchdetr.config import DataConfig
from matchdetr.data.coco import CocoDetection, DatasetError, DatasetWarning, resolve_split
from matchdetr.data.convert import convert_dataset
from matchdetr.data.transforms import build_transforms
from matchdetr.data.voc import XmlError, parse_voc_xml
from matchdetr.data.yolo import parse_label_line, parse_simple_yaml
from matchdetr.engine.coco_eval import evaluate_detections

SAME = ("AP", "AP50", "AP75", "AR1", "AR10", "AR100")  # APs/m/l use areas: COCO's are mask areas, YOLO/VOC's boxes'


@pytest.fixture(scope="module")
def copies(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("formats")
    return {"coco": synth_dir, "yolo": convert_dataset(synth_dir, "yolo", out / "yolo").parent,
            "voc": convert_dataset(synth_dir, "voc", out / "voc")}


def dataset(root: Path, split: str = "val") -> CocoDetection:
    return CocoDetection(resolve_split(root, split), build_transforms(DataConfig(test_size=96, test_max_size=160), False))


def test_format_is_detected(copies):
    assert {f: resolve_split(root, "val").format for f, root in copies.items()} == {"coco": "coco", "yolo": "yolo", "voc": "voc"}
    assert resolve_split(copies["yolo"] / "data.yaml", "train").format == "yolo"  # Ultralytics' --data x.yaml


def _predictions(gt: dict, seed: int = 0) -> list[dict]:
    """Jittered GT boxes, misses and false positives with random scores, in ``gt``'s ids."""
    rng = random.Random(seed)
    cats = [c["id"] for c in gt["categories"]]
    out = []
    for a in gt["annotations"]:
        if rng.random() < 0.15:
            continue
        x, y, w, h = a["bbox"]
        j = [rng.uniform(-0.15, 0.15) * s for s in (w, h, w, h)]
        cat = a["category_id"] if rng.random() < 0.85 else rng.choice(cats)
        out.append({"image_id": a["image_id"], "category_id": cat, "bbox": [x + j[0], y + j[1], w + j[2], h + j[3]],
                    "score": rng.random()})
    for img in gt["images"]:
        for _ in range(3):
            out.append({"image_id": img["id"], "category_id": rng.choice(cats), "score": rng.random() * 0.5,
                        "bbox": [rng.uniform(0, img["width"] / 2), rng.uniform(0, img["height"] / 2), 20.0, 15.0]})
    return out


def test_same_predictions_score_the_same_ap_in_every_format(copies):
    coco_gt = json.loads((copies["coco"] / "annotations" / "instances_val.json").read_text())
    preds = _predictions(coco_gt)
    reference = evaluate_detections(coco_gt, preds).metrics
    assert reference["AP"] > 5  # a meaningful score, not 0 == 0
    coco_names = {c["id"]: c["name"] for c in coco_gt["categories"]}
    coco_files = {i["id"]: Path(i["file_name"]).stem for i in coco_gt["images"]}
    for fmt in ("yolo", "voc"):
        ds = dataset(copies[fmt])
        gt = ds.coco_gt
        image_of = {Path(i["file_name"]).stem.removeprefix("val_"): i["id"] for i in gt["images"]}
        cat_of = {c["name"]: c["id"] for c in gt["categories"]}
        moved = [dict(p, image_id=image_of[coco_files[p["image_id"]]], category_id=cat_of[coco_names[p["category_id"]]])
                 for p in preds]
        metrics = evaluate_detections(gt, moved).metrics
        assert {k: metrics[k] for k in SAME} == pytest.approx({k: reference[k] for k in SAME}, abs=1e-9), fmt


def test_the_dataset_yields_the_same_samples(copies):
    coco, yolo, voc = (dataset(copies[f]) for f in ("coco", "yolo", "voc"))
    assert coco.label_map.names == yolo.label_map.names == voc.label_map.names
    for i in range(len(coco)):
        (a, ta), (b, tb), (c, tc) = coco[i], yolo[i], voc[i]
        assert torch.equal(a, b) and torch.equal(a, c)
        assert torch.equal(ta.labels, tb.labels) and torch.equal(ta.labels, tc.labels)
        assert torch.allclose(ta.boxes, tb.boxes, atol=1e-6) and torch.allclose(ta.boxes, tc.boxes, atol=1e-6)


@pytest.mark.parametrize("fmt", ["yolo", "voc"])
def test_synth_train_and_eval_through_the_cli(fmt, tmp_path, capsys):
    from matchdetr.cli import main

    data = tmp_path / "data"
    assert main(["synth", str(data), "--format", fmt, "--train", "4", "--val", "2", "--min-side", "96",
                 "--max-side", "128", "--max-objects", "4"]) == 0
    assert not (data / ".coco").exists() and not (data / "annotations").exists()
    sets = sum((["--set", s] for s in MICRO + ["data.num_workers=0"]), [])
    assert main(["train", "--model", "detr-tiny", "--data", str(data), "--out", str(tmp_path / "run"), "--iters", "1",
                 "--batch-size", "2", "--device", "cpu", "--no-progress", *sets]) == 0
    out = capsys.readouterr().out
    assert "AP" in out
    layout = {"yolo": "YOLO", "voc": "Pascal VOC"}[fmt]
    for split, n in (("train", 4), ("val", 2)):  # one summary line per split, before training
        assert re.search(rf"^{split}: {layout}, {n} images \(\d+ labelled, \d+ background\), \d+ classes "
                         rf"\(\d+ with instances\), \d+ instances; ", out, re.M), out
    results = tmp_path / "run" / "eval" / "results.json"
    assert main(["eval", "--predictions", str(results), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "AP50" in out and re.search(rf"^val: {layout}, 2 images", out, re.M)


# ------------------------------------------------------------------------------------------ YOLO input
def _yolo(root: Path, labels: dict[str, str], yaml: str = "names: [cat, dog]\ntrain: images/train\nval: images/train\n") -> Path:
    for name in labels:
        (root / "images" / "train").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 20), (90, 90, 90)).save(root / "images" / "train" / f"{name}.jpg")
    for name, text in labels.items():
        if text is not None:
            (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
            (root / "labels" / "train" / f"{name}.txt").write_text(text)
    (root / "data.yaml").write_text(yaml)
    return root


def _warnings(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
    return result, "\n".join(str(w.message) for w in caught if issubclass(w.category, DatasetWarning))


def test_yolo_bad_label_lines_warn_with_file_and_line(tmp_path):
    root = _yolo(tmp_path, {
        "a": "0 0.5 0.5 0.5 0.5\n1 0.5 0.5\n",  # line 2: too few columns
        "b": "1 0.25 0.5 0.5 1.0\n7 0.5 0.5 0.1 0.1\nx 0.5 0.5 0.1 0.1\n0 20 10 5 5\n",  # unknown class, text, pixels
        "c": "0 0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4\n0.5 0.5 0.5 0.1 0.1\n",  # a polygon; a fractional class
        "d": "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n",  # a duplicate line
        "neg": None,  # no label file: a negative image
    })
    ds, text = _warnings(lambda: dataset(root, "train"))
    assert "label lines dropped: too few columns (3, need 'class cx cy w h')" in text and "a.txt:2" in text
    assert "class index outside 0..1" in text and "b.jpg: 7" in text
    assert "non-numeric value" in text and "b.txt:3" in text
    assert "coordinates not normalised to [0, 1]" in text and "b.txt:4" in text
    assert "class 0.5 is not a non-negative integer" in text and "c.txt:2" in text
    assert "duplicate label lines dropped" in text and "d.txt:2" in text
    gt = {Path(i["file_name"]).stem: i["id"] for i in ds.coco_gt["images"]}
    boxes = {gt[k]: [a["bbox"] for a in ds.coco_gt["annotations"] if a["image_id"] == gt[k]] for k in gt}
    assert boxes[gt["a"]] == [[10.0, 5.0, 20.0, 10.0]]
    assert boxes[gt["b"]] == [[0.0, 0.0, 20.0, 20.0]]
    assert boxes[gt["c"]] == [pytest.approx([4.0, 2.0, 8.0, 6.0])]  # the polygon's bounding box
    assert len(boxes[gt["d"]]) == 1 and boxes[gt["neg"]] == []
    assert ds.label_map.names == ["cat", "dog"] and ds.label_map.category_ids == [0, 1]


def test_a_split_is_summarised_and_images_sharing_a_label_file_are_named(tmp_path, capsys):
    from matchdetr.data.summary import report_paths

    root = _yolo(tmp_path, {"a": "0 0.5 0.5 0.5 0.5\n1 0.2 0.2 0.1 0.1\n", "b": "", "c": "0 0.5 0.5 0.2 0.2\n"})
    Image.new("RGB", (40, 20)).save(root / "images" / "train" / "a.png")  # a prediction written beside a.jpg
    with pytest.warns(DatasetWarning, match=r"1 label file\(s\) are read by several images.*a.txt: a.jpg, a.png"):
        report_paths(resolve_split(root, "train"), "train")
    assert capsys.readouterr().out == (f"train: YOLO, 4 images (3 labelled, 1 background), 2 classes (2 with "
                                       f"instances), 5 instances; {root / 'images' / 'train'}\n")


def test_yolo_yaml_problems_are_one_line(tmp_path):
    root = _yolo(tmp_path / "a", {"a": "0 0.5 0.5 0.5 0.5\n"}, yaml="train: images/train\nval: images/train\n")
    with pytest.raises(DatasetError, match=r"data.yaml: no 'names'"):
        dataset(root, "train")
    root = _yolo(tmp_path / "b", {"a": ""}, yaml="names: [a]\ntrain: images/nowhere\n")
    with pytest.raises(DatasetError, match=r"data.yaml: images folder of 'train' not found"):
        resolve_split(root, "train")
    with pytest.raises(DatasetError, match=r"data.yaml: no 'val' entry"):
        resolve_split(root, "val")


@pytest.mark.parametrize("yaml", ["names: [a]\ntrain: images/train\n",  # Roboflow's and most hand-written files
                                  "path: .\nnames: [a]\ntrain: images/train\n",
                                  "path: ../nopath\nnames: [a]\ntrain: images/train\n"])
def test_yolo_yaml_entries_resolve_from_its_folder_given_relatively(tmp_path, monkeypatch, yaml):
    _yolo(tmp_path / "nopath", {"a": "0 0.5 0.5 0.5 0.5\n"}, yaml=yaml)
    monkeypatch.chdir(tmp_path)  # `--data nopath`: a relative folder, as typed on the command line
    for data in ("nopath", "nopath/data.yaml"):
        paths = resolve_split(data, "train")
        assert Path(paths.images).resolve() == (tmp_path / "nopath" / "images" / "train").resolve()


def test_yolo_yaml_is_data_never_code(tmp_path):
    marker = tmp_path / "ran"
    evil = f"names: !!python/object/apply:pathlib.Path.touch [['{marker}']]\ntrain: images/train\n"
    root = _yolo(tmp_path, {"a": "0 0.5 0.5 0.5 0.5\n"}, yaml=evil)
    with pytest.raises(DatasetError, match="data.yaml: "):
        dataset(root, "train")
    assert not marker.exists()


def test_simple_yaml_parser_reads_ultralytics_files():
    text = ("# COCO8\npath: ../datasets/coco8  # root\ntrain: images/train\nval: images/val\ntest:\n\n"
            "names:\n  0: person\n  1: bicycle\n  2: 'traffic light'\n")
    assert parse_simple_yaml(text) == {"path": "../datasets/coco8", "train": "images/train", "val": "images/val",
                                       "test": None, "names": {0: "person", 1: "bicycle", 2: "traffic light"}}
    assert parse_simple_yaml("nc: 2\nnames: [cat, 'hot dog']\n") == {"nc": 2, "names": ["cat", "hot dog"]}
    assert parse_simple_yaml("names:\n  - cat\n  - dog\n") == {"names": ["cat", "dog"]}


def test_yolo_too_few_columns_parsed_as_a_reason():
    assert parse_label_line("3 0.5 0.5") == "too few columns (3, need 'class cx cy w h')"
    assert parse_label_line("3 0.5 0.5 0.25 0.125") == (3, [0.5, 0.5, 0.25, 0.125])


# ------------------------------------------------------------------------------------------- VOC input
BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<annotation><filename>&lol3;</filename></annotation>"""


def _voc(root: Path, xmls: dict[str, bytes], classes: str | None = "cat\ndog\n") -> Path:
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for stem, xml in xmls.items():
        Image.new("RGB", (40, 20)).save(root / "JPEGImages" / f"{stem}.jpg")
        (root / "Annotations" / f"{stem}.xml").write_bytes(xml)
    (root / "ImageSets" / "Main" / "train.txt").write_text("".join(f"{s}\n" for s in xmls))
    if classes is not None:
        (root / "classes.txt").write_text(classes)
    return root


def _obj(name: str, box: str = "<xmin>3</xmin><ymin>2</ymin><xmax>12</xmax><ymax>11</ymax>", difficult: int = 0) -> str:
    return f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>{box}</bndbox></object>"


def test_voc_bad_files_warn_and_difficult_objects_are_ignored(tmp_path):
    good = f"<annotation><size><width>40</width><height>20</height></size>{_obj('cat')}{_obj('dog', difficult=1)}</annotation>"
    root = _voc(tmp_path, {
        "good": good.encode(), "bomb": BOMB, "broken": b"<annotation><object>",
        "odd": f"<annotation>{_obj('zebra')}{_obj('cat', '<xmin>1</xmin>')}</annotation>".encode(),
    })
    ds, text = _warnings(lambda: dataset(root, "train"))
    assert "bomb.xml: DOCTYPE/ENTITY declarations are refused" in text
    assert "broken.xml: not well-formed XML" in text
    assert "class not in the class list (odd: zebra)" in text and "missing or non-numeric bndbox (odd)" in text
    anns = ds.coco_gt["annotations"]
    assert [(a["category_id"], a["bbox"], a["iscrowd"]) for a in anns] == [(1, [2.0, 1.0, 10.0, 10.0], 0),
                                                                         (2, [2.0, 1.0, 10.0, 10.0], 1)]
    assert [Path(ds.image_path(i)).stem for i in range(len(ds))] == ["good", "odd"]
    assert ds[0][1].labels.tolist() == [0]  # the difficult dog is an ignore region, not a training target


def test_voc_without_classes_file_uses_the_standard_classes(tmp_path):
    root = _voc(tmp_path, {"a": f"<annotation>{_obj('person')}</annotation>".encode()}, classes=None)
    ds = dataset(root, "train")
    assert len(ds.label_map) == 20 and ds.label_map.names[14] == "person" and ds[0][1].labels.tolist() == [14]


def test_voc_xml_parser_refuses_declarations_and_reads_floats():
    with pytest.raises(XmlError, match="DOCTYPE"):
        parse_voc_xml(BOMB)
    with pytest.raises(XmlError, match="ENTITY"):
        parse_voc_xml(b'<!ENTITY x SYSTEM "file:///etc/passwd"><annotation/>')
    out = parse_voc_xml(f"<annotation>{_obj('cat', '<xmin>1.5</xmin><ymin>2</ymin><xmax>3</xmax><ymax>4.25</ymax>')}</annotation>".encode())
    assert out["objects"] == [("cat", [1.5, 2.0, 3.0, 4.25], False)] and out["size"] is None
