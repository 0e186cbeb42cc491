"""data/label_match.py: a model's classes against a dataset's categories, rule by rule."""

from __future__ import annotations

import warnings

import pytest

from matchdetr.data.coco import DatasetError, LabelMap
from matchdetr.data.label_match import match_labels

MODEL = LabelMap([1, 2, 3], ["circle", "square", "star"])


def _match(data: LabelMap):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = match_labels(MODEL, data, "val.json")
    return result, [str(w.message) for w in caught]


def test_identical_classes_are_used_as_they_are():
    result, said = _match(LabelMap([1, 2, 3], ["circle", "square", "star"]))
    assert result.label_map == MODEL and not result.unscored and not said


def test_same_names_other_ids_match_by_name():  # the YOLO copy of a COCO dataset
    result, said = _match(LabelMap([0, 1, 2], ["square", "circle", "star"]))
    assert [result.label_map.to_label(c) for c in (0, 1, 2)] == [1, 0, 2]  # square is the model's label 1
    assert result.label_map.names == MODEL.names and not result.unscored
    assert len(said) == 1 and "matched by name" in said[0] and "'circle' 1 -> 1" not in said[0] and "'square' 2 -> 0" in said[0]


def test_other_names_same_ids_match_by_id_and_name_the_classes():
    result, said = _match(LabelMap([1, 2, 3], ["CIRCLE", "square", "STAR"]))
    assert result.label_map.category_ids == [1, 2, 3]
    assert len(said) == 1 and "id 1 'CIRCLE' (model: 'circle')" in said[0] and "square" not in said[0]


def test_a_subset_of_the_classes_leaves_the_others_unscored():
    result, said = _match(LabelMap([7], ["star"]))
    assert result.label_map.to_label(7) == 2 and result.unscored == {0, 1}
    assert any("circle, square are not in this dataset" in s for s in said)
    assert len(set(result.label_map.category_ids)) == 3  # placeholder ids collide with nothing


def test_classes_the_model_lacks_count_as_misses():
    result, said = _match(LabelMap([10, 11], ["star", "hexagon"]))
    assert result.label_map.to_label(10) == 2 and any("hexagon" in s and "misses" in s for s in said)


def test_nothing_in_common_is_one_line():
    with pytest.raises(DatasetError, match="no class in common.*hexagon.*circle"):
        match_labels(MODEL, LabelMap([10], ["hexagon"]), "val.json")
