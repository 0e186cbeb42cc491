"""Backbone pretraining on the training set's own boxes: the stand-in for ImageNet weights where none exist.

Every paper this project reproduces starts its ResNet from ImageNet classification weights; the detector then
learns to localise on top of features that already tell object kinds apart. Where no such file can be had (the
tiny presets on the synthetic benchmark; a user without internet or with an unusual domain), this trains the
same ResNet as a classifier of square crops around the training set's boxes first, and the detector starts
from it. Only the training split is read, so the validation split stays unseen.

Measured on the synthetic benchmark (docs/benchmarks.md): Stable-DINO-tiny reaches at 400 iterations the AP
it reached at about 800 from a randomly initialised backbone.

The result is a torchvision-format ResNet file (``conv1.weight``, ``layer1.0.bn1.running_mean``, ..., ``fc.*``),
loaded like any ImageNet file. It is cached under ``$MATCHDETR_CACHE`` (default ``~/.cache/matchdetr``) by a
digest of the boxes, the ResNet and the recipe, so every model of a benchmark and every later run on the same
data reuse it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from ..config import Config, DataConfig
from ..data.coco import CocoDetection
from ..io.files import atomic_write, atomic_write_text
from ..models.backbone import ResNetBody, ResNetConfig

_VERSION = 1  # bump when the recipe below changes, so old cache entries are not reused
CONTEXT = 1.3  # crop side = CONTEXT * longer box side + PAD pixels: the object with some surroundings
PAD = 4
HOLDOUT = 0.05  # fraction of the crops kept out of training to report the accuracy
BATCH = 128
LR = 2e-3
WEIGHT_DECAY = 1e-4
MAX_CROPS = 100_000  # 1.2 GB of 64 px crops in memory; larger sets (COCO has 860k boxes) use a random image subset


@dataclass
class PretrainResult:
    path: str
    crops: int
    epochs: int
    holdout_accuracy: float  # percent, on the held-out crops
    seconds: float
    cached: bool = False

    def message(self) -> str:
        how = "reused" if self.cached else f"trained in {self.seconds:.0f} s"
        return (f"backbone pretraining ({how}): {self.crops} box crops, {self.epochs} epochs, held-out accuracy "
                f"{self.holdout_accuracy:.1f} %; {self.path}")


class BoxCrops:
    """A dataset transform that turns one image into its box crops: ``[N, 3, size, size]`` uint8 and ``[N]``
    labels (in place of the image and the boxes), so a DataLoader extracts them in parallel."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: Image.Image, boxes: Tensor, labels: Tensor, rng: object) -> tuple:
        crops = []
        for x0, y0, x1, y1 in boxes.tolist():
            side = CONTEXT * max(x1 - x0, y1 - y0) + PAD
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            box = tuple(round(v) for v in (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2))
            crop = image.crop(box).resize((self.size, self.size), Image.BILINEAR)  # outside the image: black
            crops.append(np.asarray(crop, dtype=np.uint8))
        stacked = (torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous() if crops
                   else torch.zeros(0, 3, self.size, self.size, dtype=torch.uint8))
        return stacked, torch.zeros(0, 4), labels, (self.size, self.size)


def _first(batch: list) -> tuple:
    return batch[0]


def box_crops(dataset: CocoDetection, size: int, workers: int = 2, max_crops: int = MAX_CROPS) -> tuple[Tensor, Tensor]:
    """The boxes of ``dataset`` as crops: ``[N, 3, size, size]`` uint8 and ``[N]`` int64 labels. All of them, or
    those of a random subset of the images (torch's generator) when there are more than ``max_crops``."""
    source = CocoDetection(dataset.paths, BoxCrops(size), dataset.label_map)
    counts = torch.from_numpy(dataset.box_counts().astype(np.int64))
    order = torch.arange(len(dataset)) if counts.sum() <= max_crops else torch.randperm(len(dataset))
    keep = order[:max(1, int((counts[order].cumsum(0) <= max_crops).sum()))].sort().values.tolist()
    loader = DataLoader(Subset(source, keep), batch_size=1, num_workers=workers, collate_fn=_first)
    images, labels = [], []
    for crops, target in loader:
        images.append(crops)
        labels.append(target.labels)
    return torch.cat(images), torch.cat(labels)


def cache_dir() -> Path:
    return Path(os.environ.get("MATCHDETR_CACHE") or Path.home() / ".cache" / "matchdetr") / "backbones"


def cache_key(cfg: ResNetConfig, dataset: CocoDetection, seed: int, mean: list[float], std: list[float]) -> str:
    """A digest of what determines the weights: the boxes and labels, the ResNet and the recipe."""
    h = hashlib.sha256()
    h.update(json.dumps([_VERSION, f"resnet{cfg.depth}", cfg.width, cfg.pretrain_epochs, cfg.pretrain_size, seed, mean, std,
                         MAX_CROPS, dataset.label_map.to_dict()]).encode())
    for entry in (dataset.image_info(i) for i in range(len(dataset))):
        h.update(str(entry["file_name"]).encode())
    h.update(dataset.boxes_and_labels_digest().encode())
    return h.hexdigest()[:16]


def pretrain_backbone(cfg: ResNetConfig, dataset: CocoDetection, out: Path, seed: int = 42,
                      device: torch.device | str = "cpu", workers: int = 2, mean: list[float] | None = None,
                      std: list[float] | None = None) -> PretrainResult:
    """Train ``cfg``'s ResNet (all four stages, trainable BatchNorm) to classify the box crops of ``dataset``
    for ``cfg.pretrain_epochs`` epochs and write it to ``out`` in torchvision's format. ``mean``/``std``: the
    detector's input normalisation (RGB, 0..1 scale; default DataConfig's), so the backbone sees the same inputs
    in both stages."""
    start = time.time()
    device = torch.device(device)
    mean, std = mean or DataConfig().mean, std or DataConfig().std
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # leaves the caller's RNG alone
        torch.manual_seed(seed)
        images, labels = box_crops(dataset, cfg.pretrain_size, workers)  # (the DataLoader draws a seed)
        if len(labels) < 2:
            raise ValueError(f"{dataset.coco_json_path}: backbone pretraining needs boxes, found {len(labels)}")
        order = torch.randperm(len(labels))
        n_hold = max(1, int(len(labels) * HOLDOUT))
        hold, train = order[:n_hold], order[n_hold:]
        body = ResNetBody(f"resnet{cfg.depth}", cfg.width, dilation=False, num_stages=4, norm=nn.BatchNorm2d).to(device)
        fc = nn.Linear(body.channels[-1], len(dataset.label_map)).to(device)
        shift = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
        scale = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255

        def logits(x: Tensor) -> Tensor:
            x = ((x.to(device).float() - shift) / scale).contiguous(memory_format=torch.channels_last)
            return fc(body(x)[5].mean((2, 3)))

        _fit(list(body.parameters()) + list(fc.parameters()), body, logits, images[train], labels[train].to(device),
             cfg, start)
        body.eval()
        with torch.no_grad():
            pred = torch.cat([logits(images[hold[i:i + 256]]).argmax(1).cpu() for i in range(0, len(hold), 256)])
        accuracy = 100 * (pred == labels[hold]).float().mean().item()
    state = {k: v.detach().cpu().contiguous() for k, v in body.state_dict().items()}
    state.update({"fc.weight": fc.weight.detach().cpu().contiguous(), "fc.bias": fc.bias.detach().cpu().contiguous()})
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: save_file(state, str(tmp)))
    result = PretrainResult(str(out), len(labels), cfg.pretrain_epochs, round(accuracy, 2), round(time.time() - start, 1))
    atomic_write_text(out.with_suffix(".json"), json.dumps(asdict(result), indent=2))
    return result


def pretrained_backbone_file(cfg: ResNetConfig, dataset: CocoDetection, seed: int = 42,
                             device: torch.device | str = "cpu", workers: int = 2, mean: list[float] | None = None,
                             std: list[float] | None = None) -> PretrainResult:
    """The cached pretraining result for ``(cfg, dataset, seed, mean, std)``, made first if there is none."""
    mean, std = mean or DataConfig().mean, std or DataConfig().std
    path = cache_dir() / f"resnet{cfg.depth}-w{cfg.width}-{cache_key(cfg, dataset, seed, mean, std)}.safetensors"
    summary = path.with_suffix(".json")
    if path.exists() and summary.exists():
        return PretrainResult(**dict(json.loads(summary.read_text()), cached=True))
    return pretrain_backbone(cfg, dataset, path, seed, device, workers, mean, std)


def pretrain_if_asked(backbone: nn.Module, cfg: Config, dataset: CocoDetection, device: torch.device,
                      fresh_start: bool) -> None:
    """``model.backbone.pretrain_epochs > 0``: on a fresh start (not resumed, no ``train.init``; the main
    process), pretrain a ResNet without weights on ``dataset``'s box crops (or reuse the cached result) and
    load it into ``backbone`` (only the ResNet config has the option)."""
    b = cfg.model.backbone
    if isinstance(b, ResNetConfig) and b.pretrain_epochs > 0 and not b.weights and fresh_start:
        from ..compose.backbone import load_backbone_weights

        pretrained = pretrained_backbone_file(b, dataset, cfg.train.seed, device, cfg.data.num_workers,
                                              cfg.data.mean, cfg.data.std)
        load_backbone_weights(backbone, b, str(pretrained.path))
        print(pretrained.message())


def _fit(params: list[nn.Parameter], body: nn.Module, logits: Any, images: Tensor, labels: Tensor,
         cfg: ResNetConfig, start: float) -> None:
    """``cfg.pretrain_epochs`` epochs of AdamW + one-cycle over ``images`` (uint8 crops) with horizontal flips,
    a plain line per epoch."""
    batch = min(BATCH, len(labels))  # a small dataset still trains, in whole-set batches
    per_epoch = len(labels) // batch
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LR, total_steps=max(1, cfg.pretrain_epochs * per_epoch),
                                                   pct_start=0.1)
    body.train()
    print(f"backbone pretraining: {len(labels)} box crops of {cfg.pretrain_size} px, {cfg.pretrain_epochs} epochs of "
          f"{per_epoch} steps ({time.time() - start:.0f} s to extract the crops)", flush=True)
    loss = torch.zeros(())
    for epoch in range(cfg.pretrain_epochs):
        if epoch:  # one plain line per epoch: readable in a log file as on a terminal
            print(f"backbone pretraining: epoch {epoch}/{cfg.pretrain_epochs}, loss {float(loss):.3f}, "
                  f"{time.time() - start:.0f} s", flush=True)
        perm = torch.randperm(len(labels))
        for i in range(per_epoch):
            idx = perm[i * batch:(i + 1) * batch]
            x = images[idx]
            flip = torch.rand(len(idx)) < 0.5  # the detector's one augmentation that keeps the crop's class
            x[flip] = x[flip].flip(3)
            loss = F.cross_entropy(logits(x), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
