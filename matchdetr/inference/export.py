"""ONNX export: one graph for any batch size and image size.

    matchdetr export --checkpoint runs/demo --format onnx --out model.onnx

The graph takes ``images`` ``[B, 3, H, W]`` float32, normalised as :func:`matchdetr.api.predict` does, and
(unless exported with ``with_mask=False``) ``pixel_mask`` ``[B, H, W]`` bool, True on padding. It returns

- ``logits`` ``[B, Q, C]`` and ``boxes`` ``[B, Q, 4]`` (normalised cxcywh), the model's raw last-layer output,
  and for an instance-segmentation model ``masks`` ``[B, Q, H/4, W/4]`` mask logits (stride 4 of the input);
- with ``topk=K``, also the post-processing of :class:`~matchdetr.models.postprocess.PostProcessor`:
  ``scores`` ``[B, K]``, ``labels`` ``[B, K]`` int64 (model labels) and ``boxes_xyxy`` ``[B, K, 4]``
  normalised xyxy (multiply by the original image's ``(w, h, w, h)`` for pixels).

It is traced with the TorchScript exporter (``dynamo=False``: the torch.export-based one needs onnxscript) at
opset 17 by default (>= 16 for ``GridSample``). Deformable attention follows the input size because the level
sizes stay traced tensors under tracing (``models/memory.py``, ``ops/ms_deform_attn.py``).

Everything ``matchdetr predict --model model.onnx`` needs without torch is stored in the file's metadata
(key ``matchdetr``): the resize and normalisation of the data config, the label map, the post-processing top-k.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..boxes import cxcywh_to_xyxy
from ..config import Config
from ..data.sizes import CANVAS_MULTIPLE
from ..data.label_map import LabelMap
from ..models.detector import Detector

__all__ = ["export_onnx", "onnx_metadata", "check_onnx", "check_opset", "DEFAULT_OPSET", "META_KEY"]

DEFAULT_OPSET = 17
META_KEY = "matchdetr"


def max_opset() -> int:
    """The newest opset the TorchScript exporter of the installed torch writes."""
    try:
        from torch.onnx import _constants

        return int(_constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)
    except (ImportError, AttributeError):  # a private module: fall back to what torch 2.x has written for years
        return 20


def check_opset(opset: int) -> None:
    """One line when ``opset`` is outside what the export needs (>= 16, GridSample) and the exporter can write."""
    if not 16 <= opset <= max_opset():
        raise ValueError(f"--opset {opset}: must be between 16 (GridSample) and {max_opset()} (the newest the "
                         f"torch {torch.__version__} exporter writes)")


class _ExportGraph(nn.Module):
    """The detector with plain tensor inputs/outputs (the exporter cannot return dataclasses)."""

    def __init__(self, detector: Detector, with_mask: bool, topk: int | None) -> None:
        super().__init__()
        self.detector, self.with_mask, self.topk = detector, with_mask, topk

    def forward(self, images: Tensor, pixel_mask: Tensor | None = None) -> tuple[Tensor, ...]:
        out = self.detector(images, pixel_mask if self.with_mask else None)
        logits, boxes = out.logits, out.boxes
        raw = (logits, boxes) if out.masks is None else (logits, boxes, out.masks)
        if not self.topk:
            return raw
        # The same top-k over (queries x classes) as PostProcessor, left in normalised coordinates.
        num_classes = logits.shape[-1]
        scores, index = logits.sigmoid().flatten(1).topk(self.topk, dim=1)
        query = torch.div(index, num_classes, rounding_mode="floor")
        xyxy = cxcywh_to_xyxy(boxes).gather(1, query[..., None].expand(-1, -1, 4))
        return (*raw, scores, index % num_classes, xyxy)


def _output_names(detector: Detector, topk: int | None) -> list[str]:
    raw = ["logits", "boxes"] + (["masks"] if detector.predicts_masks else [])
    return raw + (["scores", "labels", "boxes_xyxy"] if topk else [])


def onnx_metadata(detector: Detector, cfg: Config, label_map: LabelMap, with_mask: bool, topk: int | None,
                  opset: int) -> dict[str, Any]:
    """What a torch-free predictor needs: preprocessing, labels, post-processing and the I/O names."""
    return {
        "format_version": 1,
        "preset": cfg.preset,
        "arch": cfg.model.arch.kind,
        "num_classes": cfg.model.num_classes,
        "opset": opset,
        "inputs": ["images", "pixel_mask"] if with_mask else ["images"],
        "outputs": _output_names(detector, topk),
        "graph_topk": topk or 0,
        "postprocess_topk": cfg.model.postprocess.topk,
        "nms_iou": cfg.model.postprocess.nms_iou,
        "test_size": cfg.data.test_size,
        "test_max_size": cfg.data.test_max_size,
        "canvas_multiple": CANVAS_MULTIPLE,  # each image padded to its size rounded up to this (one answer per image)
        "mean": list(cfg.data.mean),
        "std": list(cfg.data.std),
        "label_map": label_map.to_dict(),
    }


def _sample_inputs(size: tuple[int, int], with_mask: bool) -> tuple[Tensor, ...]:
    """Batch of two with the second image padded, so nothing batch- or padding-specific is constant-folded."""
    h, w = size
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, h, w, generator=g)
    mask = torch.zeros(2, h, w, dtype=torch.bool)
    mask[1, (3 * h) // 4 :, :] = True
    mask[1, :, (3 * w) // 4 :] = True
    images[1][:, mask[1]] = 0.0
    return (images, mask) if with_mask else (images,)


def export_onnx(detector: Detector, cfg: Config, label_map: LabelMap, out: str | os.PathLike, *,
                opset: int = DEFAULT_OPSET, with_mask: bool = True, topk: int | None = None,
                sample_size: tuple[int, int] | None = None) -> Path:
    """Write ``detector`` (built from ``cfg``, classes ``label_map``) as an ONNX graph with dynamic batch, height
    and width; returns the path.

    topk: also output the top-k post-processing (``None``/0: raw logits and boxes only).
    sample_size: the (H, W) traced with (default: the config's test size, square); any size works afterwards.
    """
    check_opset(opset)
    try:
        import onnx
    except ImportError:
        from .predict_io import MissingExtra

        raise MissingExtra("ONNX export needs the onnx package: pip install onnx onnxruntime (in the matchdetr "
                           "checkout: pip install '.[export]')") from None
    num_outputs = cfg.model.num_classes * cfg.model.transformer.num_queries
    if topk is not None and not 0 <= topk <= num_outputs:
        raise ValueError(f"topk must be in [0, queries x classes = {num_outputs}], got {topk}")
    size = sample_size or (cfg.data.test_size,) * 2
    graph = _ExportGraph(detector, with_mask, topk).eval()
    inputs = _sample_inputs(size, with_mask)
    in_names = ["images", "pixel_mask"][: len(inputs)]
    out_names = _output_names(detector, topk)
    dynamic = {"images": {0: "batch", 2: "height", 3: "width"}, "pixel_mask": {0: "batch", 1: "height", 2: "width"}}
    dynamic = {k: v for k, v in dynamic.items() if k in in_names}
    dynamic.update({name: {0: "batch"} for name in out_names})
    if "masks" in dynamic:
        dynamic["masks"] = {0: "batch", 2: "mask_height", 3: "mask_width"}
    buf = io.BytesIO()
    was_training = detector.training
    detector.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer warns about every Python-side shape value; the round-trip check is what matters.
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, inputs, buf, opset_version=opset, dynamo=False, input_names=in_names,
                              output_names=out_names, dynamic_axes=dynamic, do_constant_folding=True)
    finally:
        detector.train(was_training)
    model = onnx.load_from_string(buf.getvalue())
    meta = onnx_metadata(detector, cfg, label_map, with_mask, topk, opset)
    entry = model.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    model.producer_name = "matchdetr"
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)
    return path


def check_onnx(detector: Detector, path: str | os.PathLike,
               sizes: Sequence[tuple[int, int]] = ((224, 224), (192, 288)), batch: int = 2) -> dict[str, float]:
    """Run the exported graph in onnxruntime and the detector in PyTorch on the same random, padded batches at
    each of ``sizes``; returns the largest absolute difference per output (over all sizes)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    out_names = [o.name for o in session.get_outputs()]
    meta = json.loads(session.get_modelmeta().custom_metadata_map[META_KEY])
    graph = _ExportGraph(detector, "pixel_mask" in names, meta["graph_topk"] or None).eval()
    worst: dict[str, float] = {}
    for h, w in sizes:
        inputs = _sample_inputs((h, w), "pixel_mask" in names)
        if batch != 2:
            inputs = tuple(t[:1].expand(batch, *t.shape[1:]).contiguous() for t in inputs)
        with torch.no_grad():
            expected = graph(*inputs)
        got = session.run(out_names, {n: t.numpy() for n, t in zip(names, inputs)})
        for name, e, g in zip(out_names, expected, got):
            if name == "labels":  # ties between equal scores may order differently; compare via scores
                continue
            diff = float(np.abs(e.numpy().astype(np.float64) - g.astype(np.float64)).max())
            worst[name] = max(worst.get(name, 0.0), diff)
    return worst
