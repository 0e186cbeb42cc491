"""`matchdetr predict --model x.onnx`: onnxruntime alone (torch blocked), same detections as the PyTorch path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matchdetr.data.transforms import resized_hw as torch_resized_hw
from matchdetr.inference.export import export_onnx
from matchdetr.inference.onnx_predict import OnnxDetector, resized_hw

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
sys.path.insert(0, str(Path(__file__).parent))
from test_export_onnx import micro_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _cli_without_torch(args: list[str], also_block: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``matchdetr <args>`` in a fresh interpreter where ``import torch`` (and ``also_block``) raises
    ImportError; it also fails if any torch module got loaded."""
    blocked = "; ".join(f"sys.modules[{m!r}] = None" for m in ("torch", *also_block))
    code = (f"import sys; {blocked}\n"
            "from matchdetr.cli import main\n"
            f"rc = main({[str(a) for a in args]!r})\n"
            "assert not any(m == 'torch' or m.startswith('torch.') for m, v in sys.modules.items() if v is not None)\n"
            "sys.exit(rc)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_resize_rule_equals_torch_path() -> None:
    for w in range(1, 400, 7):
        for h in range(1, 400, 11):
            for size, max_size in ((96, 160), (800, 1333), (224, None)):
                assert resized_hw((w, h), size, max_size) == torch_resized_hw((w, h), size, max_size)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A micro DINO with a label map of non-contiguous category ids, exported, plus three images."""
    from matchdetr.data.coco import LabelMap

    tmp = tmp_path_factory.mktemp("onnx_predict")
    det = micro_model("dino-tiny", num_classes=3, seed=2)
    det.label_map = LabelMap([3, 7, 11], ["cat", "dog", "bird"])
    path = export_onnx(det.module, det.config, det.label_map, tmp / "model.onnx")
    rng = np.random.default_rng(0)
    images = tmp / "images"
    images.mkdir()
    for name, (w, h) in {"000000000042": (150, 100), "b": (90, 130), "c": (96, 96)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(images / f"{name}.png")
    return det, path, images


def _same(torch_det: dict, onnx_det: dict) -> None:
    n = min(len(torch_det["scores"]), len(onnx_det["scores"]), 30)  # near-threshold scores may differ in count
    assert n > 0
    np.testing.assert_allclose(onnx_det["scores"][:n], torch_det["scores"][:n].numpy(), atol=1e-3)
    np.testing.assert_allclose(onnx_det["boxes"][:n], torch_det["boxes"][:n].numpy(), atol=1e-2)  # pixels
    assert onnx_det["labels"][:n].tolist() == torch_det["labels"][:n].tolist()
    assert onnx_det["names"][:n] == torch_det["names"][:n]


def test_onnx_detector_matches_torch_predict(exported) -> None:
    det, path, images = exported
    files = sorted(images.iterdir())
    onnx_det = OnnxDetector(path)
    # batched: three sizes padded into one batch, like Detector.predict
    for t, o in zip(det.predict(files, threshold=0.0), onnx_det.predict(files, threshold=0.0)):
        _same(t, o)
        assert set(o) == {"scores", "labels", "boxes", "names"} and o["labels"].dtype == np.int64
        assert set(o["labels"].tolist()) <= {3, 7, 11}


def test_cli_predict_onnx_without_torch(exported, tmp_path) -> None:
    det, path, images = exported
    out, coco = tmp_path / "out", tmp_path / "coco.json"
    proc = _cli_without_torch(["predict", "--model", path, images, "--out", out, "--threshold", "0.0",
                               "--coco-json", coco])
    assert proc.returncode == 0, proc.stderr
    assert "3 images" in proc.stdout and "COCO results" in proc.stdout
    records = json.loads((out / "detections.json").read_text())
    assert [Path(r["file"]).stem for r in records] == ["000000000042", "b", "c"]
    assert all((out / f"{Path(r['file']).stem}.png").exists() for r in records)
    expected = [det.predict([f], threshold=0.0)[0] for f in sorted(images.iterdir())]  # one at a time, as the CLI
    for record, t in zip(records, expected):
        got = {"scores": np.array([d["score"] for d in record["detections"]]),
               "boxes": np.array([d["bbox_xyxy"] for d in record["detections"]]),
               "labels": np.array([d["category_id"] for d in record["detections"]]),
               "names": [d["name"] for d in record["detections"]]}
        _same(t, got)
    results = json.loads(coco.read_text())
    # image ids: numeric stems are COCO ids, otherwise 1, 2, ... in input order -> here mixed, so 1, 2, 3
    assert {r["image_id"] for r in results} == {1, 2, 3}
    first = next(r for r in results if r["image_id"] == 1)
    x0, y0, x1, y1 = records[0]["detections"][0]["bbox_xyxy"]
    assert first["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0], abs=0.02)


def test_onnx_predict_errors(tmp_path, exported) -> None:
    from matchdetr.cli import main

    _, path, images = exported
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    assert main(["predict", "--model", str(tmp_path / "junk.onnx"), str(images), "--out", str(tmp_path)]) == 2
    assert main(["predict", "--model", str(tmp_path / "missing.onnx"), str(images)]) == 2


def test_video_without_reader_is_one_line_error(tmp_path, exported) -> None:
    _, path, _ = exported
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 64)
    proc = _cli_without_torch(["predict", "--model", path, tmp_path / "clip.mp4", "--out", tmp_path / "o"],
                              also_block=("cv2",))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "pip install '.[video]'" in proc.stderr


def test_predict_on_video(tmp_path, exported) -> None:
    cv2 = pytest.importorskip("cv2")
    det, path, _ = exported
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (120, 90))
    rng = np.random.default_rng(1)
    for _ in range(5):
        writer.write(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))
    writer.release()
    from matchdetr.cli import main

    out = tmp_path / "out"
    for args in (["--model", str(path)], ["--checkpoint", str(_save(det, tmp_path))]):
        assert main(["predict", *args, str(video), "--out", str(out), "--every", "2", "--coco-json",
                     str(tmp_path / "c.json")]) == 0
        records = json.loads((out / "detections.json").read_text())
        assert [r["frame"] for r in records] == [0, 2, 4]
        assert (out / "clip_f000004.png").exists()


def _save(det, tmp_path) -> Path:
    det.save(str(tmp_path / "ck.safetensors"))
    return tmp_path / "ck.safetensors"


def test_predict_help(capsys) -> None:
    from matchdetr.cli import main

    with pytest.raises(SystemExit) as info:
        main(["predict", "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0 and "--model" in out and "--coco-json" in out and "--every" in out


def test_onnx_and_pytorch_paths_decode_every_file_the_same(tmp_path):
    """One decoder (matchdetr.io.decode) for both paths: 16-bit, 32-bit, float, palette, transparent and EXIF-rotated files
    give the same pixels. The ONNX path used to scale a float image by its maximum (0.5 -> 255) and 32-bit
    integers as 16-bit, where the PyTorch path reads [0, 1] and min-max scales out-of-range values."""
    import numpy as np
    from PIL import Image

    from matchdetr.inference import onnx_predict
    from matchdetr.io import decode
    from matchdetr.data import images

    assert onnx_predict.load_rgb is images.load_rgb is decode.load_rgb
    from matchdetr.inference import predict

    assert onnx_predict.as_rgb is predict.as_rgb is decode.as_rgb  # one rule for files, PIL images and arrays
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(images.ImageLoadError, match="bad.png"):  # the same one-line error on both paths
        onnx_predict.as_rgb(str(tmp_path / "bad.png"))
    grad = np.linspace(0, 1, 24 * 16).reshape(16, 24)
    files = {
        "f.tif": Image.fromarray((grad * 0.5).astype(np.float32), mode="F"),
        "i32.tif": Image.fromarray((grad * 200000).astype(np.int32), mode="I"),
        "i16.png": Image.fromarray((grad * 65535).astype(np.uint16)),
        "rgba.png": Image.fromarray((np.dstack([grad] * 4) * 255).astype(np.uint8), mode="RGBA"),
        "palette.png": Image.fromarray((np.dstack([grad] * 3) * 255).astype(np.uint8)).convert("P"),
    }
    palette_t = files["palette.png"].copy()
    palette_t.info["transparency"] = 0  # a palette entry marked transparent: composited over white
    files["palette_t.png"] = palette_t
    rot = Image.fromarray((np.dstack([grad] * 3) * 255).astype(np.uint8))
    exif = rot.getexif()
    exif[0x0112] = 6
    rot.save(tmp_path / "rot.jpg", exif=exif)
    for name, img in files.items():
        img.save(tmp_path / name)
    for name in [*files, "rot.jpg"]:
        got = np.asarray(onnx_predict.as_rgb(str(tmp_path / name)))
        assert np.array_equal(got, np.asarray(images.decode_image(tmp_path / name).image)), name
    f = np.asarray(onnx_predict.as_rgb(str(tmp_path / "f.tif")))
    assert f.max() == 128  # a float image in [0, 1] keeps its scale: 0.5 -> 128, not 255
    assert np.asarray(onnx_predict.as_rgb(str(tmp_path / "rot.jpg"))).shape[:2] == (24, 16)  # rotated upright


@pytest.mark.parametrize("shape,out", [((3, 5, 7), (20, 28)), ((2, 12, 9), (5, 4)), ((1, 8, 10), (13, 37))])
def test_numpy_bilinear_resize_equals_torch(shape, out) -> None:
    import torch
    import torch.nn.functional as F

    from matchdetr.inference.onnx_predict import resize_bilinear

    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    ref = F.interpolate(x[None], size=out, mode="bilinear", align_corners=False)[0]
    np.testing.assert_allclose(resize_bilinear(x.numpy(), *out), ref.numpy(), atol=1e-5)


def test_numpy_instance_masks_equal_torch() -> None:
    import torch

    from matchdetr.models.postprocess import instance_masks as torch_masks
    from matchdetr.inference.onnx_predict import instance_masks

    logits = 4 * torch.randn(6, 10, 12, generator=torch.Generator().manual_seed(1))  # padded 40x48 input
    ref_masks, ref_score = torch_masks(logits, torch.tensor([37, 30]), torch.tensor([75, 61]))
    masks, score = instance_masks(logits.numpy(), (37, 30), (75, 61))
    assert masks.shape == (6, 75, 61) and masks.dtype == bool
    assert (masks != ref_masks.numpy()).mean() < 1e-3  # a logit within float rounding of 0 may flip
    np.testing.assert_allclose(score, ref_score.numpy(), atol=1e-4)


def test_onnx_mask_model_gives_the_masks_of_the_torch_path(tmp_path) -> None:
    # Mask-DINO exported: masks, and scores weighted by the masks, as Detector.predict gives them.
    from matchdetr.data.coco import LabelMap

    det = micro_model("maskdino-tiny", num_classes=2, seed=3)
    det.label_map = LabelMap([1, 5], ["a", "b"])
    path = export_onnx(det.module, det.config, det.label_map, tmp_path / "mask.onnx")
    rng = np.random.default_rng(1)
    files = []
    for name, (w, h) in {"p": (150, 100), "q": (90, 130)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
        files.append(tmp_path / f"{name}.png")
    for t, o in zip(det.predict(files, threshold=0.0), OnnxDetector(path).predict(files, threshold=0.0)):
        assert set(o) == {"scores", "labels", "boxes", "names", "masks"}
        _same(t, o)
        n = min(len(t["scores"]), len(o["scores"]), 30)
        assert o["masks"].shape[1:] == t["masks"].shape[1:] and o["masks"].dtype == bool
        assert (o["masks"][:n] != t["masks"][:n].numpy()).mean() < 1e-2
    # the command line without torch: masks drawn and written as COCO RLE
    out, coco = tmp_path / "out", tmp_path / "coco.json"
    proc = _cli_without_torch(["predict", "--model", path, files[0], "--out", out, "--threshold", "0.0",
                               "--coco-json", coco])
    assert proc.returncode == 0, proc.stderr
    results = json.loads(coco.read_text())
    assert results and all(set(r["segmentation"]) == {"size", "counts"} for r in results)
    assert results[0]["segmentation"]["size"] == [100, 150]
