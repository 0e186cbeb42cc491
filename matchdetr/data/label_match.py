"""Reading a dataset with a model's classes: categories are matched by name when their ids differ.

The same data in COCO and YOLO layout numbers its classes differently (COCO's category ids, YOLO's class
indices), so matching by id alone would score every circle as a square. The rule, for a model's label map
and a dataset's categories:

1. identical ids and names: used as they are;
2. every dataset class name is a model class name (names unique on both sides): matched by name, with one
   warning when that differs from matching by id;
3. else every dataset category id is a model category id: matched by id, with one warning naming the
   classes whose names differ;
4. else, some names in common: matched by name, with a warning naming the dataset classes the model does not
   have (their boxes are never predicted: they count as misses);
5. nothing in common: DatasetError naming both class lists.

Model classes the dataset does not have are *unscored*: their detections are left out of the results (COCO
evaluation refuses category ids its ground truth lacks), with a warning naming them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .common import DatasetError, DatasetWarning
from .label_map import LabelMap

_SHOWN = 6  # classes quoted in a message


@dataclass
class LabelMatch:
    """label_map: model labels ``0..C-1`` -> this dataset's category ids (names: the model's);
    unscored: model labels the dataset has no category for (their ids in ``label_map`` are placeholders)."""

    label_map: LabelMap
    unscored: set[int] = field(default_factory=set)


def _quote(items: list[str]) -> str:
    more = len(items) - _SHOWN
    return ", ".join(items[:_SHOWN]) + (f" and {more} more" if more > 0 else "")


def _unique(names: list[str]) -> bool:
    return len(set(names)) == len(names)


def match_labels(model: LabelMap, data: LabelMap, source: str | Path) -> LabelMatch:
    """How to read a dataset whose categories are ``data`` with a model whose label map is ``model`` (rules in
    the module docstring). ``source`` names the dataset in warnings and errors."""
    if model == data:
        return LabelMatch(model)
    if not data.category_ids:  # a ground truth without a category list: nothing to match names against
        return LabelMatch(model)
    m_by_name = {n: i for i, n in enumerate(model.names)}
    d_by_name = dict(zip(data.names, data.category_ids))
    names_usable = _unique(model.names) and _unique(data.names)
    common = [n for n in data.names if n in m_by_name] if names_usable else []
    ids_known = all(c in model for c in data.category_ids)
    if names_usable and len(common) == len(data.names):
        how = "name"
    elif ids_known:
        how = "id"
    elif common:
        how = "name"
    else:
        raise DatasetError(f"{source}: no class in common with the model, by name or by id: the dataset has "
                           f"{_quote(data.names)}; the model {_quote(model.names)}")
    ids: list[int | None] = [None] * len(model)
    if how == "name":
        for n in common:
            ids[m_by_name[n]] = d_by_name[n]
        moved = [f"'{n}' {model.category_ids[m_by_name[n]]} -> {d_by_name[n]}" for n in common
                 if model.category_ids[m_by_name[n]] != d_by_name[n]]
        if moved:
            warnings.warn(f"{source}: category ids differ from the model's; classes matched by name "
                          f"({_quote(moved)})", DatasetWarning, stacklevel=3)
        lacking = [n for n in data.names if n not in m_by_name]
        if lacking:
            warnings.warn(f"{source}: classes the model does not have: {_quote(lacking)}; their boxes count as "
                          "misses", DatasetWarning, stacklevel=3)
    else:
        d_name = dict(zip(data.category_ids, data.names))
        for label, cid in enumerate(model.category_ids):
            ids[label] = cid if cid in d_name else None
        renamed = [f"id {c} '{d_name[c]}' (model: '{model.names[model.to_label(c)]}')" for c in data.category_ids
                   if d_name[c] != model.names[model.to_label(c)]]
        if renamed:
            warnings.warn(f"{source}: class names differ from the model's, matched by id: {_quote(renamed)}",
                          DatasetWarning, stacklevel=3)
    unscored = {label for label, cid in enumerate(ids) if cid is None}
    if unscored:
        warnings.warn(f"{source}: the model's classes {_quote([model.names[l] for l in sorted(unscored)])} are not "
                      "in this dataset; their detections are not scored", DatasetWarning, stacklevel=3)
    spare = max([*data.category_ids, *model.category_ids]) + 1  # placeholder ids that collide with nothing
    final = []
    for cid in ids:
        if cid is None:
            cid, spare = spare, spare + 1
        final.append(cid)
    return LabelMatch(LabelMap(final, list(model.names)), unscored)
