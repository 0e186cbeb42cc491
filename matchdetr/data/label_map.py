"""Dataset category ids <-> the contiguous labels a model predicts; saved with every model."""

from __future__ import annotations

from dataclasses import dataclass, field

from .common import DatasetError


@dataclass
class LabelMap:
    """Dataset category ids <-> contiguous model labels ``0..C-1`` (sorted by id); saved with the model."""

    category_ids: list[int]
    names: list[str]
    _index: dict[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.category_ids) != len(self.names):
            raise DatasetError(f"label map: {len(self.category_ids)} category ids but {len(self.names)} names")
        self._index = {cid: label for label, cid in enumerate(self.category_ids)}
        if len(self._index) != len(self.category_ids):
            raise DatasetError(f"label map: duplicate category ids in {self.category_ids}")

    @classmethod
    def from_categories(cls, categories: list[dict]) -> "LabelMap":
        """From a COCO ``categories`` list; raises DatasetError on a malformed entry or duplicate id."""
        if not isinstance(categories, list):
            raise DatasetError("'categories' must be a list")
        for i, cat in enumerate(categories):
            if not isinstance(cat, dict) or type(cat.get("id")) is not int:
                raise DatasetError(f"category #{i} has no integer 'id': {str(cat)[:80]}")
        ordered = sorted(categories, key=lambda c: c["id"])
        return cls([int(c["id"]) for c in ordered], [str(c.get("name", c["id"])) for c in ordered])

    def to_label(self, category_id: int) -> int:
        if category_id not in self._index:
            raise KeyError(f"category id {category_id} is not in the label map")
        return self._index[category_id]

    def to_category(self, label: int) -> int:
        if not 0 <= label < len(self.category_ids):
            raise KeyError(f"label {label} is outside 0..{len(self.category_ids) - 1}")
        return self.category_ids[label]

    def __contains__(self, category_id: object) -> bool:
        return category_id in self._index

    def to_dict(self) -> dict:
        return {"category_ids": list(self.category_ids), "names": list(self.names)}

    @classmethod
    def from_dict(cls, d: dict) -> "LabelMap":
        try:
            return cls([int(c) for c in d["category_ids"]], [str(n) for n in d["names"]])
        except (KeyError, TypeError, ValueError) as err:
            raise DatasetError(f"label map: malformed dict ({err!r}); expected category_ids and names") from None

    def __len__(self) -> int:
        return len(self.category_ids)
