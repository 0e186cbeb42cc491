"""predict_outputs.py: output names unique per input, never an output onto an input."""

from __future__ import annotations

from pathlib import Path

import pytest

from matchdetr.io.out_paths import OutputPathError
from matchdetr.inference.outputs import check_outputs, output_names


def test_names_are_stems_and_clashes_get_the_extension_or_the_folder():
    paths = [Path("A/img.jpg"), Path("B/img.jpg"), Path("A/x.jpg"), Path("A/x.png"), Path("A/y.png"), Path("A/Y.jpg")]
    names = output_names(paths)
    assert [names[p] for p in paths] == ["A_img", "B_img", "x_jpg", "x_png", "y_png", "Y_jpg"]
    assert len({n.casefold() for n in names.values()}) == len(paths)  # unique on case-insensitive disks too


def test_a_generated_name_that_is_taken_gets_a_number():
    paths = [Path("x_jpg.png"), Path("x.jpg"), Path("x.png")]
    assert list(output_names(paths).values()) == ["x_jpg", "x_jpg_2", "x_png"]


def test_outputs_onto_inputs_are_refused(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    with pytest.raises(OutputPathError, match="input folder"):
        check_outputs([tmp_path], tmp_path)
    with pytest.raises(OutputPathError, match="would write over the input"):
        check_outputs([tmp_path / "a.png"], tmp_path)
    paths, names = check_outputs([tmp_path], tmp_path / "sub")  # a new folder inside the input folder is fine
    assert paths == [tmp_path / "a.png"] and names[paths[0]] == "a"


def _split_folders(root: Path) -> dict[str, Path]:
    """One split folder of each layout, with an image in it."""
    folders = {"coco": root / "coco" / "val", "yolo": root / "yolo" / "images" / "val",
               "yolo-split-first": root / "yolo2" / "val" / "images", "voc": root / "voc" / "JPEGImages"}
    for folder in folders.values():
        folder.mkdir(parents=True)
        (folder / "val_001.jpg").write_bytes(b"x")
    (root / "coco" / "annotations").mkdir()
    (root / "coco" / "annotations" / "instances_val.json").write_text("{}")
    (root / "yolo" / "labels" / "val").mkdir(parents=True)
    (root / "yolo2" / "val" / "labels").mkdir(parents=True)
    (root / "voc" / "Annotations").mkdir()
    return folders


@pytest.mark.parametrize("layout", ["coco", "yolo", "yolo-split-first", "voc"])
def test_outputs_inside_a_dataset_split_are_refused_unless_asked(tmp_path, monkeypatch, capsys, layout):
    from matchdetr.cli import main

    split = _split_folders(tmp_path)[layout]
    monkeypatch.chdir(split)  # run from inside the split: the default --out (predictions/) would land there
    assert main(["predict", "val_001.jpg", "--checkpoint", str(tmp_path / "no-run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(split) in err and "--into-dataset" in err, err
    assert not (split / "predictions").exists()
    # the image's own folder as --out: x.png beside x.jpg, both would take labels/x.txt
    with pytest.raises(OutputPathError, match="inside the dataset split folder"):
        check_outputs([split / "val_001.jpg"], split)
    with pytest.raises(OutputPathError, match="--coco-json"):
        check_outputs([split / "val_001.jpg"], tmp_path / "preds", coco_json=split / "sub" / "dets.json")
    paths, _ = check_outputs([split / "val_001.jpg"], split / "preds", into_dataset=True)  # asked for: allowed
    assert paths == [split / "val_001.jpg"] and (split / "preds").is_dir()
    check_outputs([split / "val_001.jpg"], tmp_path / split.relative_to(tmp_path).parts[0] / "runs")  # dataset root


def test_eval_out_inside_a_split_is_refused(tmp_path, capsys):
    from matchdetr.cli import main

    split = _split_folders(tmp_path)["yolo"]
    assert main(["eval", "--predictions", "r.json", "--data", str(tmp_path / "yolo"), "--out", str(split / "ev")]) == 2
    err = capsys.readouterr().err
    assert "inside the dataset split folder" in err and str(split) in err and not (split / "ev").exists()


def test_detections_json_uses_the_python_names_and_keeps_the_old_ones(tmp_path):
    """Detector.predict gives boxes / scores / labels / names per image; each detections.json entry has their
    singular (box, score, label, name), and the names earlier files used (bbox_xyxy, category_id) as aliases."""
    import json

    import numpy as np
    from PIL import Image

    from matchdetr.inference.predict_io import run_predict

    Image.new("RGB", (20, 10)).save(tmp_path / "a.png")
    det = {"boxes": np.array([[1.0, 2.0, 5.0, 6.0]]), "scores": np.array([0.9]), "labels": np.array([7]),
           "names": ["cat"]}
    run_predict(lambda imgs: [det], [str(tmp_path / "a.png")], tmp_path / "out", lambda p: Image.open(p).convert("RGB"),
                threshold=0.3)
    entry = json.loads((tmp_path / "out" / "detections.json").read_text())[0]["detections"][0]
    assert {"boxes": "box", "scores": "score", "labels": "label", "names": "name"}.keys() == det.keys()
    assert entry == {"box": [1.0, 2.0, 5.0, 6.0], "score": 0.9, "label": 7, "name": "cat",
                     "bbox_xyxy": [1.0, 2.0, 5.0, 6.0], "category_id": 7}
