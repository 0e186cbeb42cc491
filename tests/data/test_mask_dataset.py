"""CocoDetection(masks=True): every COCO segmentation form decoded as pycocotools does, box-made masks for the
unusable ones (reported), lazy decoding, EXIF alignment, and the synthetic set's masks against its annotations."""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from matchdetr.boxes import cxcywh_to_xyxy
from matchdetr.config import DataConfig
from matchdetr.data import segmentation
from matchdetr.data.coco import CocoDetection, DatasetWarning, SplitPaths, resolve_split
from matchdetr.boxes import mask_extents as mask_boxes
from matchdetr.data.mask_ops import box_masks
from matchdetr.data.synthetic import mask_to_rle
from matchdetr.data.transforms import Compose, Pipeline, RandomHorizontalFlip, RandomResize, build_transforms

pycocotools = pytest.importorskip("pycocotools")
from pycocotools import mask as ref_mask  # noqa: E402
from pycocotools.coco import COCO as RefCOCO  # noqa: E402

CFG = DataConfig()
IDENTITY = Pipeline(Compose([]), CFG.mean, CFG.std)  # no resize: masks at the stored size, comparable to COCO's
W, H = 40, 30


def write(root: Path, images: list[tuple[str, Image.Image, tuple[int, int]]], anns: list[dict]) -> SplitPaths:
    """A COCO split: ``(file name, image, JSON (w, h))`` per image, category 1."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    entries = []
    for i, (name, image, (w, h)) in enumerate(images, 1):
        image.save(root / "images" / name, **({"exif": image.info["exif"]} if "exif" in image.info else {}))
        entries.append({"id": i, "file_name": name, "width": w, "height": h})
    for i, a in enumerate(anns, 1):
        a.setdefault("image_id", 1)
        a.update(id=i, category_id=1, iscrowd=a.get("iscrowd", 0))
    path = root / "ann.json"
    path.write_text(json.dumps({"images": entries, "annotations": anns, "categories": [{"id": 1, "name": "x"}]}))
    return SplitPaths(root / "images", path)


def rle_str(mask: np.ndarray) -> dict:
    rle = ref_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def blob(seed: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    rng = np.random.default_rng(seed)
    x, y = rng.integers(0, W - 12), rng.integers(0, H - 10)
    mask[y:y + 10, x:x + 12] = rng.random((10, 12)) > 0.3
    return mask


def bbox_of(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


GOOD = [  # (segmentation, bbox): decoded exactly as pycocotools' annToMask
    ([[2, 2, 12, 2, 12, 10, 2, 10], [20, 15, 30, 15, 25, 25]], [2, 2, 28, 23]),  # a polygon in two parts
    ([[1, 1, 9, 1, 9, 9], [3, 3, 4]], [1, 1, 8, 8]),  # a valid part and an odd one (ignored, reported)
    (rle_str(blob(1)), bbox_of(blob(1))),  # compressed RLE
    (mask_to_rle(blob(2), 0, 0, H, W), bbox_of(blob(2))),  # uncompressed RLE (our generator's form)
]
BAD = [  # (segmentation, words of the warning): box-made masks
    (None, "without a segmentation"),
    ([[1, 2, 3, 4]], "without a usable polygon"),
    ({"size": [H + 1, W], "counts": rle_str(blob(3))["counts"]}, "RLE size is not their image's"),
    ([[1, 2, 10, 2, "x", 9]], "non-numeric or non-finite polygon coordinates"),
    ({"size": [H, W], "counts": [5, 3]}, "uncompressed RLE counts that are not non-negative"),
    ({"size": [H, W], "counts": 17}, "malformed RLE counts"),
    ("polygon", "malformed segmentation"),
]


@pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.*")  # its decode under numpy 2
def test_every_segmentation_form_and_the_box_fallbacks(tmp_path: Path) -> None:
    anns = [{"segmentation": s, "bbox": b} for s, b in GOOD]
    anns += [{"segmentation": s, "bbox": [5, 6, 7, 8]} for s, _ in BAD]
    anns += [{"bbox": [4, 4, 5, 5], "segmentation": rle_str(np.zeros((H, W), dtype=bool))}]  # covers no pixel
    anns += [{"bbox": [4, 4, 5, 5], "segmentation": {"size": [H, W], "counts": "!!"}}]  # the decoder rejects it
    anns += [{"bbox": [0, 0, 9, 9], "segmentation": mask_to_rle(blob(4), 0, 0, H, W), "iscrowd": 1}]
    paths = write(tmp_path, [("a.png", Image.new("RGB", (W, H)), (W, H))], anns)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = CocoDetection(paths, IDENTITY, masks=True)
    opened = "\n".join(str(w.message) for w in caught if issubclass(w.category, DatasetWarning))
    assert "2 polygon parts ignored: odd coordinate count or under 3 points (annotation ids) (2, 6)" in opened
    for k, (_, words) in enumerate(BAD):
        assert f"{words}" in opened and f"(annotation ids) ({len(GOOD) + k + 1})" in opened, (words, opened)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, target = ds[0]
        ds[0]  # the same problems again: not reported twice in a process
    decoding = [str(w.message) for w in caught if issubclass(w.category, DatasetWarning)]
    assert len(decoding) == 2 and all("a.png" in m for m in decoding)
    assert any("covers no pixel" in m for m in decoding) and any("cannot decode a segmentation" in m for m in decoding)

    ref = RefCOCO()
    ref.dataset = json.loads(paths.annotations.read_text())
    ref.createIndex()
    non_crowd = [a for a in ref.dataset["annotations"] if not a["iscrowd"]]
    assert target.masks is not None and target.masks.shape == (len(non_crowd), H, W)
    for got, ann in zip(target.masks, non_crowd):
        if ann["id"] <= len(GOOD):
            assert torch.equal(got, torch.from_numpy(ref.annToMask(ann).astype(bool))), ann["id"]
        else:
            x, y, w, h = ann["bbox"]
            assert torch.equal(got, box_masks(torch.tensor([[x, y, x + w, y + h]]), (H, W))[0]), ann["id"]


def test_masks_off_reads_no_segmentation(tmp_path: Path) -> None:
    paths = write(tmp_path, [("a.png", Image.new("RGB", (W, H)), (W, H))],
                  [{"segmentation": s, "bbox": [5, 6, 7, 8]} for s, _ in BAD])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not one word about the unusable segmentations
        ds = CocoDetection(paths, IDENTITY)
        assert ds[0][1].masks is None and len(ds[0][1]) == len(BAD)
    with pytest.raises(TypeError, match="masks=True needs transforms that carry masks"):
        CocoDetection(paths, lambda *a: a, masks=True)


def test_masks_are_decoded_per_sample_not_when_opening(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    anns = [{"segmentation": s, "bbox": b} for s, b in GOOD]
    paths = write(tmp_path, [("a.png", Image.new("RGB", (W, H)), (W, H))] * 1, anns)
    calls: list[str] = []
    real = segmentation.mask_api

    class Counting:  # the mask API, with each call recorded
        def __getattr__(self, name: str):
            calls.append(name)
            return getattr(real, name)

    monkeypatch.setattr(segmentation, "mask_api", Counting())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        ds = CocoDetection(paths, IDENTITY, masks=True)
    assert calls == []
    ds[0]
    assert "decode" in calls


def test_an_unreadable_scored_image_has_no_masks(tmp_path: Path) -> None:
    paths = write(tmp_path, [("a.png", Image.new("RGB", (W, H)), (W, H))], [{"segmentation": GOOD[0][0],
                                                                             "bbox": GOOD[0][1]}])
    (paths.images / "a.png").write_bytes(b"not an image")
    with pytest.warns(DatasetWarning, match="scored as an image without detections"):
        _, target = CocoDetection(paths, IDENTITY, masks=True, substitute=False)[0]
    assert not target.readable and target.masks is not None and target.masks.shape == (0, *target.size)


# (A half turn keeps the size, so an upright-frame JSON of orientation 3 reads as the stored frame, as for boxes.)
@pytest.mark.parametrize("orientation, json_frame", [(o, f) for o in (3, 6, 8) for f in ("stored", "upright", "twice")
                                                     if (o, f) != (3, "upright")])
def test_exif_rotated_masks_stay_on_the_object(tmp_path: Path, orientation: int, json_frame: str) -> None:
    """Stored pixels 50x40 with a white L-shape, EXIF-rotated upright; the mask follows the pixels in each
    of align_boxes' cases: the JSON in the stored frame, in the upright frame, at twice the upright size."""
    raw = Image.new("RGB", (50, 40))
    ImageDraw.Draw(raw).rectangle((5, 10, 19, 29), fill=(255, 255, 255))
    ImageDraw.Draw(raw).rectangle((20, 25, 34, 29), fill=(255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = orientation
    raw.info["exif"] = exif.tobytes()
    upright = raw.transpose({3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_270,
                             8: Image.Transpose.ROTATE_90}[orientation])
    frame = {"stored": raw, "upright": upright, "twice": upright.resize((upright.width * 2, upright.height * 2))}
    mask = np.array(frame[json_frame].convert("L")) > 128
    paths = write(tmp_path, [("rot.png", raw, frame[json_frame].size)],
                  [{"segmentation": rle_str(mask), "bbox": bbox_of(mask)}])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)  # the notes on the boxes (tests/cli/misuse/test_data.py)
        image, target = CocoDetection(paths, IDENTITY, masks=True)[0]
    expected = torch.from_numpy(np.array(upright.convert("L")) > 128)
    assert target.masks is not None and torch.equal(target.masks[0], expected)
    box = cxcywh_to_xyxy(target.boxes[0]) * torch.tensor([upright.width, upright.height] * 2)
    assert torch.allclose(box, mask_boxes(target.masks)[0], atol=1e-4)


# ---------------------------------------------------------------------------------------------- synthetic set
def test_synthetic_masks_match_their_annotations(synth_dir: Path) -> None:
    """The generator's visible-region RLEs: at scale 1 each mask's area and extent are its annotation's; after
    a flip and an upscaling resize the mask's extent is the transformed box to within a pixel. Each nearest
    resize puts a mask edge within half a pixel of its box, so the recipe's crop branch (resize, crop, resize
    by up to 2.5x) stays within 0.5 * 2.5 + 0.5 px. (Downscaling can lose a one-pixel tip, so the extent can
    shrink by more: the mask is coarser there, not misaligned.)"""
    paths = resolve_split(synth_dir, "val")
    gt = json.loads(paths.annotations.read_text())
    ds = CocoDetection(paths, IDENTITY, masks=True)
    for i in range(len(ds)):
        _, target = ds[i]
        anns = [a for a in gt["annotations"] if a["image_id"] == target.image_id and not a["iscrowd"]]
        assert target.masks is not None and len(target.masks) == len(anns)
        assert target.masks.flatten(1).sum(1).tolist() == [a["area"] for a in anns]
        xywh = torch.tensor([a["bbox"] for a in anns])
        assert torch.equal(mask_boxes(target.masks), torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1))
    upscale = DataConfig(train_scales=[170, 200], train_max_size=400, crop_resize_scales=[170], crop_min=80,
                         crop_max=150)  # the synthetic images are 96..160 px a side
    one_resize = Pipeline(Compose([RandomHorizontalFlip(0.5), RandomResize(upscale.train_scales, 400)]), CFG.mean,
                          CFG.std)
    for transforms, atol in ((one_resize, 1.0), (build_transforms(upscale, train=True), 1.75)):
        ds = CocoDetection(paths, transforms, masks=True, seed=3)
        for epoch in range(3):
            ds.set_epoch(epoch)
            for i in range(len(ds)):
                image, target = ds[i]
                h, w = target.size
                assert target.masks is not None and target.masks.shape == (len(target), *image.shape[1:])
                box = cxcywh_to_xyxy(target.boxes) * torch.tensor([w, h, w, h])
                assert torch.allclose(mask_boxes(target.masks), box, atol=atol), (epoch, i)
    again = ds[len(ds) - 1][1]
    assert torch.equal(again.masks, target.masks) and torch.equal(again.boxes, target.boxes)  # (seed, epoch, index)
    random.seed(0)  # the global stream plays no part
    assert torch.equal(ds[len(ds) - 1][1].masks, target.masks)
