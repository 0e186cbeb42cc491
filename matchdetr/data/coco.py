"""COCO-format detection dataset, validated up front so that bad data fails (or warns) before training.

At construction only cheap checks run (JSON structure, ids, boxes, ``os.path.exists``), so a 118k-image COCO
split opens in seconds. Problems are aggregated into one warning per kind naming up to five ids and the
count; problems that leave nothing to train on raise :class:`DatasetError`, one line naming the file.
Images are decoded in ``__getitem__``; an undecodable file is reported and, for training, replaced by the next
readable index. A dataset read for scoring (``substitute=False``: evaluation, unstable score, error breakdown)
never substitutes, since the substitute would be scored under its own id twice and the unreadable image not at
all: it returns a blank stand-in flagged ``Target.readable = False``, which scoring counts as an image without
detections.

EXIF orientation: images are returned upright and boxes follow them (``images.align_boxes``: boxes of the
stored pixels, the COCO convention, are rotated with them), and so do masks (``mask_ops.align_masks``); each
fix-up warns once per file and process. Masks (``masks=True``) are decoded per sample (``segmentation.py``).
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ..structures import Target
from .coco_json import check_boxes, read_coco_json
from .common import DatasetError, DatasetWarning, Problems, SplitPaths
from .images import DecodedImage, ImageLoadError, align_boxes, decode_image, load_rgb
from .label_map import LabelMap
from .segmentation import Segmentations
from .splits import resolve_split

__all__ = ["CocoDetection", "DatasetError", "DatasetWarning", "LabelMap", "SplitPaths", "resolve_split"]
_MAX_SUBSTITUTES = 32  # undecodable images skipped in a row before giving up on a sample
_NUMBER = (int, float)  # exact types (`type(v) in`): a JSON true/false is not a number here


class CocoDetection(Dataset):
    """COCO-format detection dataset yielding ``(image [3, H, W] float32 normalised, Target)``.

    transforms: called as ``t(image, boxes [N, 4] abs xyxy, labels [N], rng)`` (see ``transforms.py``).
    label_map: a model's classes (a checkpoint's), matched to this split's categories by ``label_match.py``
        (by name when the ids differ); ``None`` builds the label map from this split's categories.
    seed: augmentation randomness is a pure function of ``(seed, epoch, index)``.
    substitute: replace an undecodable image by the next readable one (training); False for datasets that are
        scored, where it becomes a blank stand-in with ``Target.readable = False`` (module docstring).
    masks: also read each annotation's ``segmentation`` into ``Target.masks`` (``[N, h, w]`` bool, transformed
        with the image by ``transforms.masked``); one without a usable segmentation gets its filled box
        (``segmentation.py``). False: ``Target.masks`` is None and segmentations are not even looked at.
    """

    def __init__(
        self, paths: SplitPaths, transforms: Callable, label_map: LabelMap | None = None, *, seed: int = 0,
        substitute: bool = True, masks: bool = False,
    ) -> None:
        self.paths, self.transforms, self.seed, self.substitute, self.masks = paths, transforms, seed, substitute, masks
        if masks and not callable(getattr(transforms, "masked", None)):
            raise TypeError(f"masks=True needs transforms that carry masks (transforms.Pipeline), got {transforms!r}")
        self.coco_json_path = Path(paths.annotations)
        if not Path(paths.images).is_dir():
            raise DatasetError(f"{paths.images}: image folder not found")
        data = read_coco_json(self.coco_json_path) if paths.format == "coco" else self._read_foreign(paths)
        self.coco_gt: Path | dict = self.coco_json_path if paths.format == "coco" else data  # what evaluation reads
        try:
            own = LabelMap.from_categories(data["categories"])
        except DatasetError as err:
            raise DatasetError(f"{self.coco_json_path}: {err}") from None
        self.label_map, self.unscored_labels = own, set()  # unscored: model labels this dataset has no class for
        if label_map is not None:  # a model's classes: matched by name where the ids differ (label_match.py)
            from .label_match import match_labels

            match = match_labels(label_map, own, self.coco_json_path)
            self.label_map, self.unscored_labels = match.label_map, match.unscored
        # Shared memory so set_epoch reaches DataLoader workers even when they persist between epochs.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._unreadable: dict[int, str] = {}  # indices found undecodable in this process, and why
        self._warned: set[int] = set()  # indices whose size/orientation fix-up was reported
        problems = Problems(self.coco_json_path)
        self._entries = self._parse_images(data["images"], problems)
        self._parse_annotations(data["annotations"], problems)
        problems.warn()
        if not self._entries:
            raise DatasetError(
                f"{self.coco_json_path}: no usable images ({len(data['images'])} listed, images folder "
                f"{paths.images})"
            )
        self.image_ids: list[int] = [int(e["id"]) for e in self._entries]

    # ------------------------------------------------------------------------------------ construction
    def _read_foreign(self, paths: SplitPaths) -> dict:
        from .formats import read_foreign

        problems = Problems(self.coco_json_path)
        data = read_foreign(paths, problems)
        problems.warn()
        return data

    def _parse_images(self, images: list, problems: Problems) -> list[dict]:
        seen: set[int] = set()
        usable: list[dict] = []
        folder = Path(self.paths.images)
        for i, img in enumerate(images):
            ok = type(img) is dict and type(img.get("id")) is int and isinstance(img.get("file_name"), str)
            ok = ok and all(type(img.get(k)) in _NUMBER and 0 < img[k] < math.inf for k in ("width", "height"))
            if not ok:
                ident = img.get("id", f"#{i}") if type(img) is dict else f"#{i}"
                problems.add("malformed image entries skipped (need id, file_name, width, height)", ident)
                continue
            if img["id"] in seen:  # annotations could not be attributed: refuse rather than guess
                raise DatasetError(f"{self.coco_json_path}: duplicate image id {img['id']}")
            seen.add(img["id"])
            if not os.path.exists(folder / img["file_name"]):
                problems.add("image files missing on disk, images skipped", folder / img["file_name"])
                continue
            usable.append(img)
        self._known_ids = seen  # annotations of skipped-but-listed images are dropped without a second warning
        return usable

    def _parse_annotations(self, annotations: list, problems: Problems) -> None:
        """Field checks in Python, box arithmetic in numpy: COCO train has 860k annotations."""
        index = {img["id"]: i for i, img in enumerate(self._entries)}
        kept: list[tuple[Any, int, int, list, Any]] = []  # (annotation id, image index, label, bbox, segmentation)
        seen: set[int] = set()
        for i, ann in enumerate(annotations):
            ident = ann.get("id", f"#{i}") if type(ann) is dict else f"#{i}"
            if type(ann) is not dict:
                problems.add("malformed annotations dropped (annotation ids)", ident)
                continue
            if type(ident) is int:  # COCO evaluation indexes GT by id: a duplicate would silently drop a box
                if ident in seen:
                    raise DatasetError(f"{self.coco_json_path}: duplicate annotation id {ident}")
                seen.add(ident)
            if ann.get("iscrowd", 0):  # DETR trains without crowd regions; evaluation reads them from the JSON
                continue
            image_id, category_id, bbox = ann.get("image_id"), ann.get("category_id"), ann.get("bbox")
            if type(image_id) is not int or image_id not in self._known_ids:
                problems.add("annotations dropped: unknown image id (annotation ids)", ident)
            elif image_id not in index:
                continue  # its image was skipped, already reported
            elif type(category_id) is not int or category_id not in self.label_map:
                problems.add("annotations dropped: unknown category id (annotation ids)", ident)
            elif type(bbox) not in (list, tuple) or len(bbox) != 4 or any(type(v) not in _NUMBER for v in bbox):
                problems.add("annotations dropped: malformed bbox (annotation ids)", ident)
            else:
                label = self.label_map.to_label(category_id)
                kept.append((ident, index[image_id], label, bbox, ann.get("segmentation")))
        row = np.array([k[1] for k in kept], dtype=np.int64)
        sizes = np.array([[e["width"], e["height"]] for e in self._entries], dtype=np.float64).reshape(-1, 2)
        xyxy, keep, reasons = check_boxes(np.array([k[3] for k in kept], dtype=np.float64), sizes[row])
        for kind, mask in reasons.items():
            for k in np.flatnonzero(mask):
                problems.add(f"annotations {kind} (annotation ids)", kept[k][0])
        # Flat arrays sorted by image, not per-image Python objects: cheap to fork into DataLoader workers.
        order = np.flatnonzero(keep)
        order = order[np.argsort(row[order], kind="stable")]
        self._offsets = np.concatenate([[0], np.cumsum(np.bincount(row[order], minlength=len(self._entries)))])
        self._boxes = xyxy[order].astype(np.float32)
        self._labels = np.array([k[2] for k in kept], dtype=np.int64)[order]
        if self.masks:  # copied into flat arrays, decoded per sample; (h, w) of each annotation's image
            hw = sizes[row[order], ::-1].astype(np.int64)
            self._segments = Segmentations.build([kept[k][4] for k in order], hw, [kept[k][0] for k in order], problems)

    # ----------------------------------------------------------------------------------------- access
    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream; call before creating the epoch's DataLoader iterator."""
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def __len__(self) -> int:
        return len(self._entries)

    def image_info(self, idx: int) -> dict:
        """The JSON ``images`` entry of sample ``idx``."""
        return self._entries[idx]

    def image_path(self, idx: int) -> Path:
        return Path(self.paths.images) / self._entries[idx]["file_name"]

    def load_image(self, idx: int) -> Image.Image:
        """Upright RGB image of sample ``idx`` (raises ImageLoadError naming the file)."""
        return load_rgb(self.image_path(idx))

    def box_counts(self) -> np.ndarray:
        """``[len(self)]`` number of (non-crowd) boxes of each sample."""
        return np.diff(self._offsets)

    def segmentation_counts(self) -> tuple[int, int]:
        """``(annotations with a usable segmentation, all kept annotations)``; needs ``masks=True``."""
        if not self.masks:
            raise TypeError("segmentation_counts needs a dataset opened with masks=True")
        return self._segments.usable(), len(self._labels)

    def boxes_and_labels_digest(self) -> str:
        """SHA-256 of every parsed box and label (in image order): identifies the annotations whatever the format."""
        h = hashlib.sha256()
        for array in (self._offsets, self._boxes, self._labels):
            h.update(np.ascontiguousarray(array).tobytes())
        return h.hexdigest()

    def ground_truth(self, idx: int) -> dict[str, Any]:
        """Boxes ``[N, 4]`` (abs xyxy, JSON frame) and class names of sample ``idx``, for drawing."""
        lo, hi = int(self._offsets[idx]), int(self._offsets[idx + 1])
        names = [self.label_map.names[int(l)] for l in self._labels[lo:hi]]
        return {"boxes": torch.from_numpy(self._boxes[lo:hi].copy()), "names": names}

    def __getitem__(self, idx: int) -> tuple[Tensor, Target]:
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f"sample index {idx} out of range for {n} images")
        idx = idx + n if idx < 0 else idx
        # A string seed is hashed with SHA-512 by `random`: identical in every process, unlike hash().
        rng = random.Random(f"{self.seed}-{self.epoch}-{idx}")
        if not self.substitute:
            return self._scored_sample(idx, rng)
        tried = min(n, _MAX_SUBSTITUTES + 1)
        for step in range(tried):
            j = (idx + step) % n
            if j in self._unreadable:
                continue
            try:
                decoded = decode_image(self.image_path(j))
            except ImageLoadError as err:
                self._unreadable[j] = str(err)
                warnings.warn(f"{err}; image skipped, the next readable image is used", DatasetWarning)
                continue
            return self._sample(j, decoded, rng)
        last = self._unreadable[(idx + tried - 1) % n]
        if tried == n:  # the whole split: say so, rather than a window of sample indices
            raise DatasetError(f"{self.coco_json_path}: no readable image: none of the {n} images of this split "
                               f"can be decoded; e.g. {last}")
        raise DatasetError(f"{self.coco_json_path}: no readable image among {tried} in a row (samples {idx} to "
                           f"{(idx + tried - 1) % n} of {n}); last: {last}")

    def _scored_sample(self, idx: int, rng: random.Random) -> tuple[Tensor, Target]:
        """Sample ``idx`` itself, or, when its file cannot be decoded, a blank stand-in without boxes (same image
        id and original size) flagged unreadable, reported once per file and process."""
        try:
            decoded = decode_image(self.image_path(idx))
        except ImageLoadError as err:
            if idx not in self._unreadable:
                self._unreadable[idx] = str(err)
                warnings.warn(f"{err}; scored as an image without detections", DatasetWarning)
            info = self._entries[idx]
            blank = Image.new("RGB", (64, 64))  # any size: the transforms resize it; its output is dropped
            image, _, _, size = self.transforms(blank, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), rng)
            masks = torch.zeros((0, *size), dtype=torch.bool) if self.masks else None
            return image, Target(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), self.image_ids[idx],
                                 (int(info["height"]), int(info["width"])), tuple(size), readable=False, masks=masks)
        return self._sample(idx, decoded, rng)

    def _sample(self, j: int, decoded: DecodedImage, rng: random.Random) -> tuple[Tensor, Target]:
        lo, hi = int(self._offsets[j]), int(self._offsets[j + 1])
        boxes = torch.from_numpy(self._boxes[lo:hi].copy())
        labels = torch.from_numpy(self._labels[lo:hi].copy())
        info = self._entries[j]  # masks first: their fallbacks are the boxes in the JSON frame
        masks = (self._segments.masks(lo, hi, boxes, (int(info["width"]), int(info["height"])), decoded,
                                      str(self.image_path(j))) if self.masks else None)
        boxes = self._to_decoded_frame(j, decoded, boxes)
        if masks is None:
            image, boxes, labels, size = self.transforms(decoded.image, boxes, labels, rng)
        else:
            image, boxes, labels, masks, size = self.transforms.masked(decoded.image, boxes, labels, masks, rng)
        orig_size = (decoded.image.height, decoded.image.width)
        return image, Target(boxes, labels, self.image_ids[j], orig_size, tuple(size), masks=masks)

    def _to_decoded_frame(self, j: int, decoded: DecodedImage, boxes: Tensor) -> Tensor:
        """Bring ``[N, 4]`` abs xyxy boxes from the JSON frame into the upright decoded image (module doc)."""
        info = self._entries[j]
        boxes, note = align_boxes(boxes, (int(info["width"]), int(info["height"])), decoded)
        if note and j not in self._warned:
            self._warned.add(j)
            warnings.warn(f"{self.image_path(j)}: {note}", DatasetWarning)
        return boxes
