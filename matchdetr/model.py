"""What users hold: :class:`Model`, a detector with everything it needs to be used on its own.

    model = matchdetr.build("stable-dino-tiny")          # or matchdetr.load("runs/exp")
    result = model.fit(data="runs/synthetic", out="runs/exp", iters=600)   # train; returns the final metrics
    model.evaluate(data="runs/synthetic")                # COCO AP of the val split
    model.predict(["a.jpg"], threshold=0.3)              # detections per image
    model.save("model.safetensors"); model.export("model.onnx")

The torch module is ``model.module`` (a :class:`~matchdetr.models.detector.Detector`, which sees only its typed
parts); ``model.config`` is the :class:`~matchdetr.config.Config` it was built from and ``model.label_map``
its classes. Calling the model runs the module (``model(images, pixel_mask)``), and attributes the Model does
not have are looked up on the module (``model.parameters()``, ``model.backbone``), as an Ultralytics model does.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .config import Config
from .data.label_map import LabelMap
from .models.detector import Detector
from .structures import DetectorOutput, Target

if TYPE_CHECKING:  # pragma: no cover
    from .engine.coco_eval import EvalResult
    from .engine.train import TrainResult


class Model:
    """A detector, its config and its classes.

    module: the ``nn.Module``; forward ``(images [B, 3, H, W] normalised, pixel_mask [B, H, W] True on padding)
        -> DetectorOutput`` (logits ``[B, Q, C]``, boxes ``[B, Q, 4]`` normalised cxcywh).
    config: what it was built from (saved with it).
    label_map: model label ``i`` <-> dataset category id and name.
    fresh: True for a model just built from a preset (its weights are an initialisation): ``fit`` then trains
        from the preset's own initialisation, seeded by ``train.seed`` as the command line does; False once it
        holds trained or loaded weights, which ``fit`` trains on from.
    """

    def __init__(self, module: Detector, config: Config, label_map: LabelMap, *, fresh: bool = False) -> None:
        if len(label_map) != config.model.num_classes:
            raise ValueError(f"label map has {len(label_map)} classes but model.num_classes is "
                             f"{config.model.num_classes}")
        self.module, self.config, self.label_map, self.fresh = module, config, label_map, fresh

    # --------------------------------------------------------------------------------- the torch module
    def __call__(self, images: torch.Tensor, pixel_mask: torch.Tensor | None = None,
                 targets: list[Target] | None = None) -> DetectorOutput:
        return self.module(images, pixel_mask, targets)

    _OWN = ("module", "config", "label_map", "fresh")

    def __getattr__(self, name: str) -> Any:
        if name in Model._OWN:  # not set yet (copy, unpickling)
            raise AttributeError(name)
        return getattr(self.module, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # an attribute of the module is set on the module (model.encoder = ..., as on an nn.Module)
        if name not in Model._OWN and "module" in self.__dict__ and hasattr(self.module, name):
            setattr(self.module, name, value)
        else:
            object.__setattr__(self, name, value)

    def eval(self) -> "Model":
        self.module.eval()
        return self

    def train(self, mode: bool = True) -> "Model":
        self.module.train(mode)
        return self

    def to(self, *args: Any, **kwargs: Any) -> "Model":
        """As ``nn.Module.to`` (device and/or dtype), returning the Model."""
        self.module.to(*args, **kwargs)
        return self

    def double(self) -> "Model":
        return self.to(torch.float64)

    def float(self) -> "Model":
        return self.to(torch.float32)

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def names(self) -> list[str]:
        """The class names, by model label."""
        return list(self.label_map.names)

    def __repr__(self) -> str:
        params = sum(p.numel() for p in self.module.parameters())
        return (f"Model(preset={self.config.preset!r}, arch={self.config.model.arch.kind}, "
                f"classes={len(self.label_map)}, parameters={params / 1e6:.2f}M, device={self.device})")

    # ------------------------------------------------------------------------------------------ using it
    def predict(self, images: Any, threshold: float = 0.3, batch_size: int = 4) -> list[dict[str, Any]]:
        """Detections per image (paths, PIL images, or arrays / tensors: HxW grey, HxWxC or CxHxW with C = 1, 3
        or 4, uint8 or float in [0, 1]; the rule of ``io.decode.as_rgb``): ``boxes`` ``[K, 4]`` xyxy pixels
        of the original image, ``scores``, ``labels`` (dataset category ids), ``names`` (+ ``masks`` ``[K, H, W]``
        for instance segmentation); see :func:`matchdetr.inference.predict.predict_images`. An image's detections
        do not depend on the other images or on ``batch_size`` (each is padded to its own canvas)."""
        from .inference.predict import predict_images

        return predict_images(self.module, self.config, self.label_map, images, threshold, batch_size)

    def save(self, path: str | os.PathLike) -> Path:
        """One safetensors file: weights + config + label map, everything :func:`matchdetr.load` needs."""
        from .engine.checkpoint import save_model

        save_model(self.module, self.config, self.label_map, path)
        return Path(path)

    def load_weights(self, path: str | os.PathLike) -> str:
        """Copy a checkpoint's weights in (file or run directory), for fine-tuning on another label set: the
        class-dependent tensors keep the rows of the classes both have by name, new classes start fresh.
        Returns one line saying what was loaded and re-initialised (``engine/finetune.py``)."""
        from .engine.finetune import load_pretrained

        message = load_pretrained(self.module, self.config, self.label_map, path)
        self.fresh = False
        return message

    def export(self, path: str | os.PathLike, *, opset: int | None = None, topk: int | None = None,
               with_mask: bool = True, check: bool = False) -> Path:
        """An ONNX graph with dynamic batch and image size (``matchdetr export``); ``check`` runs onnxruntime
        against PyTorch at two sizes and raises above 1e-3."""
        from .inference.export import DEFAULT_OPSET, check_onnx, export_onnx

        out = export_onnx(self.module, self.config, self.label_map, path, opset=opset or DEFAULT_OPSET,
                          with_mask=with_mask, topk=topk)
        if check:
            worst = check_onnx(self.module, out)
            if max(worst.values()) > 1e-3:
                raise RuntimeError(f"{out}: ONNX outputs differ from PyTorch by {max(worst.values()):.2e} (> 1e-3)")
        return out

    def evaluate(self, data: str | os.PathLike, *, split: str = "val", images: str | None = None,
                 annotations: str | None = None, batch_size: int = 8, workers: int = 2,
                 device: str | torch.device | None = None, out: str | os.PathLike | None = None,
                 progress: bool = True) -> "EvalResult":
        """COCO evaluation of a split of ``data`` (a COCO, YOLO or VOC dataset folder, or a data.yaml): AP, AP50,
        ... in percent and per-class AP (``segm_*`` too for a mask model); ``out`` also writes metrics.json,
        the results file, per-class AP, PR curves and the confusion matrix there. The scores do not depend on
        ``batch_size`` (each image is padded to its own canvas: ``engine/evaluate.py``), so they equal those
        ``fit`` printed for the same weights."""
        from .data.coco import resolve_split
        from .engine.evaluate import eval_dataset, evaluate

        paths = resolve_split(data, split, images, annotations)
        dev = torch.device(device) if device is not None else self.device
        result = evaluate(self.module, eval_dataset(self.config, self.label_map, paths), dev, batch_size=batch_size,
                          num_workers=workers, out_dir=out, progress=progress)
        if out is not None and result is not None:
            from .reports.report import write_eval_report

            write_eval_report(result, out)
        assert result is not None
        return result

    def fit(self, data: str | os.PathLike | None = None, out: str | os.PathLike = "runs/train", *,
            iters: int | None = None, epochs: int | None = None, batch_size: int | None = None,
            resume: bool = False, exist_ok: bool = False, device: str = "auto", val: bool = True,
            progress: bool = True, **overrides: Any) -> "TrainResult":
        """Train on ``data`` into the run directory ``out`` and return the run's :class:`TrainResult` (``.metrics``:
        the final evaluation). The model then holds the trained weights (the EMA weights when EMA is on; the last
        ones, also after an early stop: ``matchdetr.load(out, best=True)`` gives the best by val AP). The run
        directory also gets ``best.safetensors`` and ``predictions.png`` (detections on validation images).

        As ``matchdetr train``: ``iters`` / ``epochs`` set the schedule's length (the learning-rate drop keeps its
        place in it), ``overrides`` are config values (``lr=2e-4`` for ``train.lr``, ``transformer__num_queries=50``
        for ``model.transformer.num_queries``), ``resume`` continues ``out`` from its newest checkpoint and
        ``exist_ok`` starts over in an ``out`` holding another run. A fresh model trains from its preset's
        initialisation; a loaded or trained one from its weights (class heads re-initialised where the
        dataset's classes differ). Errors raise one-line exceptions; Ctrl-C saves a checkpoint and raises
        :class:`~matchdetr.engine.guard.TrainingStopped`."""
        from .config import overridden, train_config
        from .engine.train import train

        cfg = train_config(overridden(copy.deepcopy(self.config), overrides), data, iters, epochs, batch_size)
        initial = None if self.fresh else (self.module.state_dict(), self.label_map, "the model's weights",
                                           self.config.preset)
        result = train(cfg, out, device=device, resume=resume, progress=progress, exist_ok=exist_ok, val=val,
                       initial=initial)
        if val:
            from .reports.val_predictions import write_run_predictions

            write_run_predictions(result)
        if result.module is not None:  # the main process: adopt the trained model
            self.module, self.config, self.label_map, self.fresh = (result.module, result.config, result.label_map,
                                                                    False)
        return result
