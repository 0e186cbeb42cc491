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
