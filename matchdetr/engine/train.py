"""Training loop: AdamW, step schedule, grad clipping, AMP, EMA, periodic evaluation, exact resume, DDP.

Exact resume rests on three facts: every data sample is a pure function of ``(seed, epoch, index)``
(``CocoDetection``), the batch order of an epoch is a pure function of ``(seed, epoch)``
(``EpochBatchSampler``), and the checkpoint holds the optimizer, the EMA, the grad scaler and the global torch
RNG state (dropout, denoising noise) at the iteration it was written. The learning rate is a pure function of
the iteration. Nothing else is random, so a resumed run continues bit for bit.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from .. import api
from ..config import Config
from ..config_checks import check_config, schedule_warnings
from ..data.coco import CocoDetection, DatasetError, LabelMap, SplitPaths
from ..data.collate import collate
from ..data.sampler import EpochBatchSampler
from ..data.transforms import build_transforms
from ..analysis.unstable_score import unstable_score
from ..compose import build_criterion
from ..fileio import atomic_write_text
from ..progress import TrainProgress
from . import checkpoint as ck
from . import distributed as dist
from .compile import compile_model
from .run_dir import new_run_id, prepare_run_dir
from .guard import (NonFiniteGuard, StopSignals, TrainingStopped, first_nonfinite_grad, gradient_norm,
                    nonfinite_terms)
from .coco_eval import EvalResult
from .evaluate import evaluate
from .optim import ModelEMA, lr_factor, param_groups, set_lr


@dataclass
class TrainResult:
    run_dir: Path
    iterations: int
    evaluation: EvalResult | None  # the final evaluation (None without a validation split / off the main process)
    seconds: float


def _autocast(device: torch.device, amp: str) -> Any:
    if amp == "none":
        return None
    if amp not in ("bf16", "fp16"):
        raise ValueError(f"train.amp must be none, bf16 or fp16, got '{amp}'")
    if device.type != "cuda":
        warnings.warn(f"train.amp={amp} needs CUDA; running fp32 on {device.type}")
        return None
    return partial(torch.autocast, device_type="cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _resume_config(cfg: Config, meta: dict[str, Any]) -> Config:
    """The checkpoint's config wins (the weights belong to it); only the schedule length comes from ``cfg``."""
    saved = Config.from_dict(meta["config"])
    cfg.model.num_classes = saved.model.num_classes  # set from the dataset at the start, not by the user
    if saved.model != cfg.model or saved.data != cfg.data:
        warnings.warn("resuming: the model/data config of the checkpoint is used; differing options were ignored")
    saved.train.iters, saved.train.epochs = cfg.train.iters, cfg.train.epochs
    saved.train.compile = cfg.train.compile  # how to run, not what: the command's choice
    return saved


class Trainer:
    """One training run into ``out_dir``; ``resume`` / ``exist_ok`` follow the run-directory rules of
    ``engine/run_dir.py``. ``progress``: a bar on a terminal (else, and when False, a plain line per log line)."""

    def __init__(self, cfg: Config, train_paths: SplitPaths, val_paths: SplitPaths | None, out_dir: str | os.PathLike,
                 device: str = "auto", resume: bool = False, progress: bool = True, exist_ok: bool = False) -> None:
        check_config(cfg)  # before anything is read, built or deleted
        self.device = dist.init_from_env(device)
        self.out_dir = Path(out_dir)
        self.progress = progress and dist.is_main()
        self.resume_from = ck.newest_complete(self.out_dir) if resume else None  # skips unreadable ones
        prepare_run_dir(self.out_dir, resume, exist_ok, self.resume_from is not None, init=cfg.train.init,
                        main_process=dist.is_main())
        if resume and not exist_ok and self.resume_from is None and dist.is_main():
            print(f"--resume: no complete checkpoint in {self.out_dir / 'checkpoints'}; starting from scratch")
        label_map = None
        # The run's id goes into every checkpoint it writes; pruning deletes only checkpoints with this id.
        self.run_id, self.own_run_ids = new_run_id(), set()
        if self.resume_from is not None:
            meta = ck.read_meta(self.resume_from[1])
            cfg = _resume_config(cfg, meta)
            label_map = LabelMap.from_dict(meta["label_map"])
            if isinstance(meta.get("run_id"), str):
                self.run_id = meta["run_id"]
            else:  # a run begun before run ids: its earlier checkpoints carry none, and are its own
                self.own_run_ids.add(None)
        self.own_run_ids.add(self.run_id)
        self.cfg = cfg
        torch.manual_seed(cfg.train.seed)  # identical initial weights on every process
        self.train_set = CocoDetection(train_paths, build_transforms(cfg.data, train=True), label_map, seed=cfg.train.seed)
        if label_map is not None and self.train_set.label_map != label_map:
            raise ValueError(f"{train_paths.annotations}: categories differ from the checkpoint's label map")
        if int(self.train_set.box_counts().sum()) == 0:
            raise DatasetError(f"{train_paths.annotations}: the training split has no usable boxes in its "
                               f"{len(self.train_set)} images; nothing to learn from")
        self.label_map = self.train_set.label_map
        self.val_set = (CocoDetection(val_paths, build_transforms(cfg.data, train=False), self.label_map, substitute=False)
                        if val_paths is not None else None)
        cfg.model.num_classes = len(self.label_map)
        self.model = api.from_config(cfg, self.label_map).to(self.device)
        b = cfg.model.backbone
        if b.pretrain_epochs > 0 and not b.name.startswith("resnet"):
            raise ValueError(f"model.backbone.pretrain_epochs (box-crop pretraining) is for the ResNet backbones; "
                             f"{b.name} starts from its ImageNet weights (model.backbone.weights=imagenet)")
        if b.pretrain_epochs > 0 and not b.weights and not cfg.train.init and self.resume_from is None and dist.is_main():
            # Rank 0 only: DistributedDataParallel broadcasts its weights to the other processes below.
            from ..interop.torchvision_resnet import load_torchvision_resnet
            from .backbone_pretrain import pretrained_backbone_file

            pretrained = pretrained_backbone_file(b, self.train_set, cfg.train.seed, self.device, cfg.data.num_workers,
                                                  cfg.data.mean, cfg.data.std)
            load_torchvision_resnet(self.model.backbone, pretrained.path)
            print(pretrained.message())
        if cfg.train.init and self.resume_from is None:  # weights only; optimizer and schedule start fresh
            from ..finetune import load_pretrained

            message = load_pretrained(self.model, cfg.train.init)
            if dist.is_main():
                print(message)
        self.criterion = build_criterion(cfg.model)
        t = cfg.train
        self.optimizer = torch.optim.AdamW(param_groups(self.model, t.lr, t.lr_backbone, t.weight_decay,
                                                        {k: t.lr_proj_mult for k in t.lr_proj_names}),
                                           lr=t.lr, weight_decay=t.weight_decay)
        self.autocast = _autocast(self.device, t.amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda" and t.amp == "fp16")
        self.ema = ModelEMA(self.model, t.ema_decay) if t.ema_decay > 0 else None
        self.sampler = EpochBatchSampler(len(self.train_set), t.batch_size, shuffle=True, seed=t.seed,
                                         rank=dist.rank(), world=dist.world_size(), drop_last=True)
        self.iters_per_epoch = self.sampler.batches_per_epoch()
        self.total_iters = t.iters if t.iters > 0 else t.epochs * self.iters_per_epoch
        self.drop_at = int(t.lr_drop if t.iters > 0 else t.lr_drop * self.iters_per_epoch)
        if dist.is_main():
            schedule_warnings(t, self.total_iters)
        self.iteration = 0
        self.guard, self.signals, self.stop_requested = NonFiniteGuard(t.max_nonfinite_skips), StopSignals(), False
        self._csv: Any = None  # results.csv writer, opened on the first log line
        if self.resume_from is not None:
            self._load(self.resume_from)
        if self.resume_from is None:
            # Each process draws its own dropout and denoising noise (seeded by rank), like distinct GPUs.
            torch.manual_seed(cfg.train.seed + dist.rank())
        # Without auxiliary losses the per-layer heads of refining models get no gradient.
        unused = not cfg.model.loss.aux_loss
        self.net = (DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                                            find_unused_parameters=unused)
                    if dist.is_dist() else self.model)
        if t.compile:  # in place: the state dict and evaluation see the same module (engine/compile.py)
            compile_model(self.net, self.device)

    # ------------------------------------------------------------------------------------ checkpoints
    def _load(self, found: tuple[int, Path, Path]) -> None:
        iteration, weights, state_path = found
        state_dict, _ = ck.load_weights(weights)
        self.model.load_state_dict(state_dict)
        state = ck.load_state(state_path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and "ema" in state:
            self.ema.module.load_state_dict(state["ema"])
            self.ema.updates = int(state["ema_updates"])
        rngs = state["rng"]
        if len(rngs) != dist.world_size():
            warnings.warn(f"{state_path}: saved by {len(rngs)} processes, resumed with {dist.world_size()}; "
                          "random streams restart, so the run is no longer bit-identical")
        cpu_state, cuda_state = rngs[min(dist.rank(), len(rngs) - 1)]
        torch.set_rng_state(cpu_state)
        if cuda_state is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(cuda_state, self.device)
        self.iteration = iteration
        _truncate_metrics(self.out_dir / "metrics.jsonl", iteration)
        if dist.is_main():
            print(f"resumed from {weights} at iteration {iteration}")

    def _save(self) -> None:
        # every process's own random state (CPU, and its GPU's), so each resumes its own stream
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        rngs = dist.all_gather_objects((torch.get_rng_state(), cuda))
        if not dist.is_main():
            return
        name = ck.checkpoint_name(self.iteration)
        state: dict[str, Any] = {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                                 "rng": [tuple(r) for r in rngs], "iteration": self.iteration}
        if self.ema is not None:
            state["ema"], state["ema_updates"] = self.ema.module.state_dict(), self.ema.updates
        ckdir = self.out_dir / "checkpoints"
        ck.save_state(ckdir / f"{name}.state.pt", state)  # state first: the weights file marks completion
        api.save(self.model, ckdir / f"{name}.safetensors", iteration=self.iteration, run_id=self.run_id)
        ck.prune(self.out_dir, self.cfg.train.keep_last, self.own_run_ids)

    # -------------------------------------------------------------------------------------------- loop
    def _loader(self, epoch: int, start_batch: int) -> Any:
        self.sampler.set_epoch(epoch, start_batch)
        self.train_set.set_epoch(epoch)
        loader = DataLoader(self.train_set, batch_sampler=self.sampler, collate_fn=collate,
                            num_workers=self.cfg.data.num_workers, generator=torch.Generator().manual_seed(epoch),
                            pin_memory=self.device.type == "cuda")
        return iter(loader)

    def _step(self, batch: Any) -> dict[str, float] | None:
        t = self.cfg.train
        batch = batch.to(self.device, non_blocking=True)
        targets = batch.targets
        with self.autocast() if self.autocast else nullcontext():
            out = self.net(batch.images, batch.pixel_mask, targets)
        loss = self.criterion(out, targets)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss.total).backward()  # also for a non-finite loss: DDP needs every rank's backward
        self.scaler.unscale_(self.optimizer)  # a no-op without fp16 loss scaling
        grad_norm = gradient_norm([p.grad for p in self.model.parameters() if p.grad is not None])
        # One collective and one host read per step carry all three verdicts, so every process skips (or
        # stops) at the same step, else DDP hangs; the gradients are already all-reduced, the loss is not.
        flags = torch.stack([(~torch.isfinite(loss.total.detach())).float().reshape(()),
                             (~torch.isfinite(grad_norm)).float().to(loss.total.device),
                             loss.total.new_tensor(float(self.signals.received is not None))])
        bad_loss, bad_grad, stop = dist.all_reduce_sum(flags)[0].tolist()
        self.stop_requested = stop > 0
        if bad_loss > 0:
            bad = nonfinite_terms(loss.losses, loss.total)
            self.guard.skip(self.iteration, f"non-finite loss ({', '.join(bad) or 'on another process'})")
            self.optimizer.zero_grad(set_to_none=True)
            return None
        if bad_grad > 0:
            if self.scaler.is_enabled() and self.scaler.get_scale() >= 1.0:  # fp16 overflow: the scaler's job
                self.scaler.step(self.optimizer)  # skips the update because of the inf
                self.scaler.update()  # lowers the scale
            else:
                bad_param = first_nonfinite_grad(self.model.named_parameters())
                self.guard.skip(self.iteration, f"non-finite gradient (loss {float(loss.total):.4g} is finite; "
                                                f"first bad gradient: {bad_param})")
            self.optimizer.zero_grad(set_to_none=True)
            return None
        if t.clip_max_norm > 0:  # clip with the norm just computed rather than computing it again
            torch.nn.utils.clip_grads_with_norm_(self.model.parameters(), t.clip_max_norm, grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.guard.ok()
        if self.ema is not None:
            self.ema.update(self.model)
        logs = {k: v.detach() for k, v in loss.losses.items()}
        logs["loss"] = loss.total.detach()
        logs["grad_norm"] = grad_norm.detach()
        return logs

    def _log(self, record: dict[str, Any], writer: Any) -> None:
        if not dist.is_main():
            return
        # NaN (e.g. APs of a split without small objects) is written as null: strict JSON for other tools.
        record = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in record.items()}
        with open(self.out_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        self._results_csv(record)
        if writer is not None:
            prefix = "train" if record["type"] == "train" else "val"
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("iter", "epoch"):
                    writer.add_scalar(f"{prefix}/{k}", v, record["iter"])

    def _evaluate(self, writer: Any, final: bool = False) -> EvalResult | None:
        if self.val_set is None:
            return None
        model = self.ema.module if self.ema is not None else self.model
        sub = self.out_dir / ("eval" if final else f"eval/iter_{self.iteration:07d}")
        result = evaluate(model, self.val_set, self.device, batch_size=self.cfg.train.batch_size,
                          num_workers=self.cfg.data.num_workers, out_dir=sub if dist.is_main() else None,
                          threshold=self.cfg.train.eval_threshold, autocast=self.autocast, progress=self.progress)
        if result is not None:
            self._log({"type": "eval", "iter": self.iteration, **result.metrics}, writer)
        return result

    def _results_csv(self, record: dict[str, Any]) -> None:
        """results.csv beside metrics.jsonl, one row per record (built from the jsonl on first use, so a
        resumed run starts from the lines it kept)."""
        from ..reports import ResultsCsv

        if self._csv is None:
            self._csv = ResultsCsv(self.out_dir / "results.csv", self.out_dir / "metrics.jsonl")
        else:
            self._csv.append(record)

    def _log_unstable(self, writer: Any) -> None:
        """The per-layer unstable score (Stable-DINO sec 2.4.3) on the first validation images, logged as a
        ``type: unstable`` record; main process only (a forward pass in eval mode, no collectives)."""
        if self.val_set is None or not dist.is_main():
            return
        score = unstable_score(self.model, self.val_set, self.criterion.matcher, self.device,
                               self.cfg.train.unstable_images, self.cfg.train.batch_size)
        self._log({"type": "unstable", "iter": self.iteration, **score.metrics()}, writer)

    def run(self) -> TrainResult:
        """Train to the end; SIGINT/SIGTERM or too many non-finite steps save a checkpoint and raise
        :class:`~matchdetr.engine.guard.TrainingStopped` (one line)."""
        with self.signals:
            return self._run()

    def _stop(self, saved: bool) -> None:
        """Save (unless this iteration just did) and raise the one-line reason."""
        if not saved:
            self._save()
        path = self.out_dir / "checkpoints" / f"{ck.checkpoint_name(self.iteration)}.safetensors"
        if self.guard.exhausted:
            raise self.guard.error(self.iteration, str(path))
        signum = self.signals.received
        raise TrainingStopped(f"stopped by {StopSignals.name(signum)} at iteration {self.iteration}/{self.total_iters}; "
                              f"checkpoint {path}; continue with --resume", 128 + (signum or 15))

    def _run(self) -> TrainResult:
        t, start = self.cfg.train, time.time()
        if dist.is_main():
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.json").write_text(self.cfg.to_json())
        writer = _tensorboard(self.out_dir) if t.tensorboard and dist.is_main() else None
        self.model.train()
        bar = TrainProgress(self.total_iters, self.iteration, bar=self.progress, enabled=dist.is_main())
        data_iter, window, skipped = None, [], 0
        while self.iteration < self.total_iters:
            epoch, in_epoch = divmod(self.iteration, self.iters_per_epoch)
            if data_iter is None or in_epoch == 0:
                data_iter = self._loader(epoch, in_epoch)
            factor = lr_factor(self.iteration, self.drop_at, t.lr_drop_factor, t.warmup_iters)
            set_lr(self.optimizer, factor)
            logs = self._step(next(data_iter))
            self.iteration += 1
            bar.update()
            skipped = skipped + 1 if logs is None else 0
            if logs is not None:
                window.append(logs)
            if window and (self.iteration % t.log_every == 0 or self.iteration == self.total_iters):
                # average each key over the steps that have it: denoising terms are absent on GT-free batches
                keys = dict.fromkeys(k for w in window for k in w)
                record = {k: float(torch.stack([w[k] for w in window if k in w]).float().mean()) for k in keys}
                record.update(type="train", iter=self.iteration, epoch=epoch, lr=t.lr * factor)  # the transformer's lr
                self._log(record, writer)
                bar.record(self.iteration, record)
                window = []
            if self.iteration % t.checkpoint_every == 0 or self.iteration == self.total_iters:
                self._save()
            if self.guard.exhausted or (self.stop_requested and self.iteration < self.total_iters):
                self._stop(saved=self.iteration % t.checkpoint_every == 0 or self.iteration == self.total_iters)
            if t.eval_every and self.iteration % t.eval_every == 0 and self.iteration < self.total_iters:
                self._evaluate(writer)
            if t.unstable_every and self.iteration % t.unstable_every == 0:
                self._log_unstable(writer)
        bar.close()
        evaluation = self._evaluate(writer, final=True)
        if dist.is_main():
            final_model = self.ema.module if self.ema is not None else self.model
            final_model.config, final_model.label_map = self.cfg, self.label_map
            api.save(final_model, self.out_dir / "model.safetensors", iteration=self.iteration, run_id=self.run_id)
        dist.barrier()
        if writer is not None:
            writer.close()
        return TrainResult(self.out_dir, self.iteration, evaluation, time.time() - start)


def _tensorboard(out_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warnings.warn("train.tensorboard=true needs the tensorboard package (pip install tensorboard); logging to metrics.jsonl only")
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))


def _truncate_metrics(path: Path, iteration: int) -> None:
    """Drop log lines written after the checkpoint we resume from (the killed run's tail)."""
    if not dist.is_main() or not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("iter", 0) <= iteration:
                keep.append(line)
        except json.JSONDecodeError:
            continue  # a line cut by the kill
    atomic_write_text(path, "".join(l + "\n" for l in keep))


def train(cfg: Config, train_paths: SplitPaths, val_paths: SplitPaths | None, out_dir: str | os.PathLike,
          device: str = "auto", resume: bool = False, progress: bool = True, exist_ok: bool = False) -> TrainResult:
    """Train ``cfg`` on a COCO-format split; see :class:`Trainer` (and ``engine/run_dir.py`` for ``resume`` /
    ``exist_ok``)."""
    return Trainer(cfg, train_paths, val_paths, out_dir, device, resume, progress, exist_ok).run()
