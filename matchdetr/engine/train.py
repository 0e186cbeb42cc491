"""Training loop: AdamW, step schedule, grad clipping, AMP, EMA, periodic evaluation, exact resume, DDP.

Exact resume rests on three facts: every data sample is a pure function of ``(seed, epoch, index)``
(``CocoDetection``), the batch order of an epoch is a pure function of ``(seed, epoch)``
(``EpochBatchSampler``), and the checkpoint holds the optimizer, the EMA, the grad scaler and the global torch
RNG state (dropout, denoising noise) at the iteration it was written. The learning rate is a pure function of
the iteration. Nothing else is random, so a resumed run continues bit for bit.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ..compose import build_criterion, from_config
from ..config import Config
from ..config.checks import check_config, schedule_warnings
from ..data.coco import CocoDetection, DatasetError, LabelMap, SplitPaths
from ..data.collate import collate
from ..data.sampler import EpochBatchSampler
from ..data.transforms import build_transforms
from ..models.layers import set_activation_checkpointing
from ..io.progress import TrainProgress
from . import checkpoint as ck
from . import distributed as dist
from .backbone_pretrain import pretrain_if_asked
from .compile import compile_model
from .device import autocast_for
from .run_dir import new_run_id, prepare_run_dir
from .guard import (NonFiniteGuard, StopSignals, TrainingStopped, first_nonfinite_grad, gradient_norm,
                    nonfinite_terms)
from .coco_eval import EvalResult
from .evaluate import evaluate
from .optim import ModelEMA, lr_factor, param_groups, set_lr
from .run_log import RunLog, truncate_metrics
from .train_state import load_training_state, resume_config, save_training_state
from .unstable_score import unstable_score


@dataclass
class TrainResult:
    run_dir: Path
    iterations: int
    evaluation: EvalResult | None  # the final evaluation (None without a validation split / off the main process)
    seconds: float


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
            cfg = resume_config(cfg, meta)
            label_map = LabelMap.from_dict(meta["label_map"])
            if isinstance(meta.get("run_id"), str):
                self.run_id = meta["run_id"]
            else:  # a run begun before run ids: its earlier checkpoints carry none, and are its own
                self.own_run_ids.add(None)
        self.own_run_ids.add(self.run_id)
        self.cfg = cfg
        torch.manual_seed(cfg.train.seed)  # identical initial weights on every process
        self.train_set = CocoDetection(train_paths, build_transforms(cfg.data, train=True), label_map, seed=cfg.train.seed,
                                       masks=cfg.data.masks)  # instance masks in the targets (segmentation)
        if label_map is not None and self.train_set.label_map != label_map:
            raise ValueError(f"{train_paths.annotations}: categories differ from the checkpoint's label map")
        if int(self.train_set.box_counts().sum()) == 0:
            raise DatasetError(f"{train_paths.annotations}: the training split has no usable boxes in its "
                               f"{len(self.train_set)} images; nothing to learn from")
        self.label_map = self.train_set.label_map
        self.val_set = (CocoDetection(val_paths, build_transforms(cfg.data, train=False), self.label_map, substitute=False,
                                      masks=cfg.data.masks)
                        if val_paths is not None else None)
        cfg.model.num_classes = len(self.label_map)
        self.model = from_config(cfg, self.label_map).to(self.device)
        # Rank 0 only: DistributedDataParallel broadcasts its weights to the other processes below.
        pretrain_if_asked(self.model.backbone, cfg, self.train_set, self.device,
                          fresh_start=self.resume_from is None and not cfg.train.init and dist.is_main())
        if cfg.train.init and self.resume_from is None:  # weights only; optimizer and schedule start fresh
            from .finetune import load_pretrained

            message = load_pretrained(self.model, cfg.train.init)
            if dist.is_main():
                print(message)
        self.criterion = build_criterion(cfg.model)
        t = cfg.train
        self.optimizer = torch.optim.AdamW(param_groups(self.model, t.lr, t.lr_backbone, t.weight_decay,
                                                        {k: t.lr_proj_mult for k in t.lr_proj_names}),
                                           lr=t.lr, weight_decay=t.weight_decay)
        self.autocast = autocast_for(self.device, t.amp)
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
        set_activation_checkpointing(self.model, t.checkpoint_activations)
        if t.compile:  # in place: the state dict and evaluation see the same module (engine/compile.py)
            compile_model(self.net, self.device)

    # ------------------------------------------------------------------------------------ checkpoints
    def _load(self, found: tuple[int, Path, Path]) -> None:
        iteration, weights, state_path = found
        load_training_state(weights, state_path, self.model, self.optimizer, self.scaler, self.ema, self.device)
        self.iteration = iteration
        if dist.is_main():
            truncate_metrics(self.out_dir / "metrics.jsonl", iteration)
            print(f"resumed from {weights} at iteration {iteration}")

    def _save(self) -> None:
        save_training_state(self.out_dir / "checkpoints", self.iteration, self.model, self.optimizer, self.scaler,
                            self.ema, self.device, self.run_id)
        if dist.is_main():
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

    def _evaluate(self, final: bool = False) -> EvalResult | None:
        if self.val_set is None:
            return None
        model = self.ema.module if self.ema is not None else self.model
        sub = self.out_dir / ("eval" if final else f"eval/iter_{self.iteration:07d}")
        result = evaluate(model, self.val_set, self.device, batch_size=self.cfg.train.batch_size,
                          num_workers=self.cfg.data.num_workers, out_dir=sub if dist.is_main() else None,
                          threshold=self.cfg.train.eval_threshold, autocast=self.autocast, progress=self.progress)
        if result is not None:
            self.log.write({"type": "eval", "iter": self.iteration, **result.metrics})
        return result

    def _log_unstable(self) -> None:
        """The per-layer unstable score (Stable-DINO sec 2.4.3) on the first validation images, logged as a
        ``type: unstable`` record; main process only (a forward pass in eval mode, no collectives)."""
        if self.val_set is None or not dist.is_main():
            return
        score = unstable_score(self.model, self.val_set, self.criterion.matcher, self.device,
                               self.cfg.train.unstable_images, self.cfg.train.batch_size)
        self.log.write({"type": "unstable", "iter": self.iteration, **score.metrics()})

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
        self.log = RunLog(self.out_dir, t.tensorboard, dist.is_main())
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
                self.log.write(record)
                bar.record(self.iteration, record)
                window = []
            if self.iteration % t.checkpoint_every == 0 or self.iteration == self.total_iters:
                self._save()
            if self.guard.exhausted or (self.stop_requested and self.iteration < self.total_iters):
                self._stop(saved=self.iteration % t.checkpoint_every == 0 or self.iteration == self.total_iters)
            if t.eval_every and self.iteration % t.eval_every == 0 and self.iteration < self.total_iters:
                self._evaluate()
            if t.unstable_every and self.iteration % t.unstable_every == 0:
                self._log_unstable()
        bar.close()
        evaluation = self._evaluate(final=True)
        if dist.is_main():
            final_model = self.ema.module if self.ema is not None else self.model
            final_model.config, final_model.label_map = self.cfg, self.label_map
            ck.save_model(final_model, self.out_dir / "model.safetensors", iteration=self.iteration, run_id=self.run_id)
        dist.barrier()
        self.log.close()
        return TrainResult(self.out_dir, self.iteration, evaluation, time.time() - start)


def train(cfg: Config, train_paths: SplitPaths, val_paths: SplitPaths | None, out_dir: str | os.PathLike,
          device: str = "auto", resume: bool = False, progress: bool = True, exist_ok: bool = False) -> TrainResult:
    """Train ``cfg`` on a COCO-format split; see :class:`Trainer` (and ``engine/run_dir.py`` for ``resume`` /
    ``exist_ok``)."""
    return Trainer(cfg, train_paths, val_paths, out_dir, device, resume, progress, exist_ok).run()
