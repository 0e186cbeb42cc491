"""Training: AdamW, step schedule, grad clipping, AMP, EMA, periodic evaluation, exact resume, DDP.

Exact resume rests on three facts: every data sample is a pure function of ``(seed, epoch, index)``
(``CocoDetection``), the batch order of an epoch is a pure function of ``(seed, epoch)``
(``EpochBatchSampler``), and the checkpoint holds the optimizer, the EMA, the grad scaler and the global torch
RNG state (dropout, denoising noise) at the iteration it was written. The learning rate is a pure function of
the iteration. Nothing else is random, so a resumed run continues bit for bit.

:class:`Trainer` sets a run up in named steps (run directory, resumed state, datasets, model, initial weights,
optimisation, schedule, restore, wrap); the step itself is ``engine/step.py``.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ..compose.criterion import build_criterion
from ..compose.model import build_detector
from ..config import Config
from ..config.checks import check_config, schedule_warnings
from ..data.coco import CocoDetection, DatasetError, LabelMap
from ..data.collate import collate
from ..data.sampler import EpochBatchSampler
from ..data.splits import resolve_split
from ..data.transforms import build_transforms
from ..io.progress import TrainProgress
from ..models.detector import Detector
from ..models.layers import set_activation_checkpointing
from . import checkpoint as ck
from . import distributed as dist
from .backbone_pretrain import pretrain_if_asked
from .best import BEST_WEIGHTS, BestTracker
from .coco_eval import EvalResult
from .compile import compile_model
from .device import autocast_for
from .evaluate import evaluate
from .finetune import load_pretrained, transfer_weights
from .mask_data import check_mask_data
from .guard import NonFiniteGuard, StopSignals, TrainingStopped
from .optim import ModelEMA, lr_factor, param_groups, set_lr
from .run_dir import new_run_id, prepare_run_dir
from .run_log import RunLog, truncate_metrics
from .step import Step
from .train_state import load_training_state, resume_config, save_training_state
from .unstable_score import unstable_score

# Weights to start from: (state dict, the label map its class heads belong to, where they come from, their preset)
Initial = tuple[dict[str, torch.Tensor], LabelMap, str, str]


@dataclass
class TrainResult:
    """run_dir, iterations trained, the final evaluation (None without a validation split / off the main
    process), wall seconds; on the main process the trained ``module`` (EMA weights when EMA is on; the last
    weights, also after an early stop: the best are in ``run_dir/best.safetensors``) with its ``config`` and
    ``label_map``; ``early_stopped``: the run ended on ``train.early_stop_patience``."""

    run_dir: Path
    iterations: int
    evaluation: EvalResult | None
    seconds: float
    module: Detector | None = None
    config: Config | None = None
    label_map: LabelMap | None = None
    early_stopped: bool = False

    @property
    def metrics(self) -> dict[str, float]:
        """The final evaluation's metrics (AP, AP50, ... in percent), or {} without one."""
        return dict(self.evaluation.metrics) if self.evaluation is not None else {}


class Trainer:
    """One training run of ``cfg`` (its data paths in ``cfg.data``) into ``out_dir``; ``resume`` / ``exist_ok``
    follow the run-directory rules of ``engine/run_dir.py``. ``progress``: a bar on a terminal (else, and when
    False, a plain line per log line). ``val``: evaluate on the validation split. ``initial``: weights to start
    from (``Model.fit`` of a loaded model); the caller's ``cfg`` is never changed."""

    def __init__(self, cfg: Config, out_dir: str | os.PathLike, device: str = "auto", resume: bool = False,
                 progress: bool = True, exist_ok: bool = False, val: bool = True, initial: Initial | None = None) -> None:
        cfg = copy.deepcopy(cfg)
        check_config(cfg)  # before anything is read, built or deleted
        start = time.time()
        self.device = dist.init_from_env(device)
        self.out_dir, self.progress = Path(out_dir), progress and dist.is_main()
        if dist.is_main():  # the first line, before the datasets are read and the model is built
            # "resuming" only where there is something to resume (a listing, not a read: this line comes first)
            has_checkpoints = resume and any((self.out_dir / "checkpoints").glob("*.safetensors"))
            print(_start_line(cfg, self.out_dir, self.device, has_checkpoints), flush=True)
        self._open_run_dir(cfg, resume, exist_ok)
        cfg, saved_labels = self._resumed(cfg)
        self.cfg = cfg
        torch.manual_seed(cfg.train.seed)  # identical initial weights on every process
        self._datasets(val, saved_labels)
        self._build()
        self._initial_weights(initial)
        self._optimization()
        self._schedule()
        self._restore()
        self._wrap()
        if dist.is_main():
            print(self._ready_line(time.time() - start), flush=True)

    # ----------------------------------------------------------------------------------------- set-up steps
    def _open_run_dir(self, cfg: Config, resume: bool, exist_ok: bool) -> None:
        """Which checkpoint to continue (if any), and the run directory made ready by its rules."""
        self.resume_from = ck.newest_complete(self.out_dir) if resume else None  # skips unreadable ones
        prepare_run_dir(self.out_dir, resume, exist_ok, self.resume_from is not None, init=cfg.train.init or "",
                        main_process=dist.is_main())
        if resume and not exist_ok and self.resume_from is None and dist.is_main():
            print(f"--resume: no complete checkpoint in {self.out_dir / 'checkpoints'}; starting from scratch")

    def _resumed(self, cfg: Config) -> tuple[Config, LabelMap | None]:
        """The run's id (written into every checkpoint; pruning deletes only checkpoints with it) and, when
        resuming, the checkpoint's config and label map."""
        self.run_id, self.own_run_ids = new_run_id(), set()
        labels = None
        if self.resume_from is not None:
            meta = ck.read_meta(self.resume_from[1])
            cfg = resume_config(cfg, meta, self.out_dir)
            labels = LabelMap.from_dict(meta["label_map"])
            if isinstance(meta.get("run_id"), str):
                self.run_id = meta["run_id"]
            else:  # a run begun before run ids: its earlier checkpoints carry none, and are its own
                self.own_run_ids.add(None)
        self.own_run_ids.add(self.run_id)
        return cfg, labels

    def _datasets(self, val: bool, labels: LabelMap | None) -> None:
        """The training split (its classes set the model's), and the validation split read as for scoring."""
        d = self.cfg.data
        if d.path is None and not (d.train_images and d.train_annotations):
            raise DatasetError("no dataset: give the data folder (matchdetr train --data DIR, fit(data=DIR): a COCO, "
                               "YOLO or VOC dataset, or a data.yaml)")
        train_paths = resolve_split(d.path, "train", d.train_images, d.train_annotations)
        val_paths = resolve_split(d.path, "val", d.val_images, d.val_annotations) if val else None
        self.train_set = CocoDetection(train_paths, build_transforms(d, train=True), labels, seed=self.cfg.train.seed,
                                       masks=d.masks)  # instance masks in the targets (segmentation)
        if labels is not None and self.train_set.label_map != labels:
            raise ValueError(f"{train_paths.annotations}: categories differ from the checkpoint's label map")
        if int(self.train_set.box_counts().sum()) == 0:
            raise DatasetError(f"{train_paths.annotations}: the training split has no usable boxes in its "
                               f"{len(self.train_set)} images; nothing to learn from")
        self.label_map = self.train_set.label_map
        # substitute=False: an unreadable image is scored as one without detections, never replaced by another
        self.val_set = None if val_paths is None else CocoDetection(
            val_paths, build_transforms(d, train=False), self.label_map, substitute=False, masks=d.masks)
        if d.masks:  # a mask model on box-only data, or a val GT segm scoring refuses: one line now, not at the end
            check_mask_data(self.train_set, self.val_set)

    def _build(self) -> None:
        """The model for the dataset's classes (seeded: identical on every process) and its criterion."""
        self.cfg.model.num_classes = len(self.label_map)
        self.model = build_detector(self.cfg).to(self.device)
        self.criterion = build_criterion(self.cfg.model)

    def _initial_weights(self, initial: Initial | None) -> None:
        """A fresh run starts from the backbone's pretraining, ``train.init`` or ``initial``; weights only, the
        optimizer and the schedule start fresh. Rank 0's weights reach the others through DDP's broadcast."""
        if self.resume_from is not None:
            return
        cfg = self.cfg
        pretrain_if_asked(self.model.backbone, cfg, self.train_set, self.device,
                          fresh_start=not cfg.train.init and initial is None and dist.is_main())
        message = None
        if cfg.train.init:
            message = load_pretrained(self.model, cfg, self.label_map, cfg.train.init)
        elif initial is not None:
            message = transfer_weights(self.model, cfg, self.label_map, *initial)
        if message and dist.is_main():
            print(message)

    def _optimization(self) -> None:
        """AdamW over the parameter groups (backbone and projection learning rates), AMP, grad scaler, EMA."""
        t = self.cfg.train
        groups = param_groups(self.model, t.lr, t.lr_backbone, t.weight_decay, {k: t.lr_proj_mult for k in t.lr_proj_names})
        self.optimizer = torch.optim.AdamW(groups, lr=t.lr, weight_decay=t.weight_decay)
        self.autocast = autocast_for(self.device, t.amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda" and t.amp == "fp16")
        self.ema = ModelEMA(self.model, t.ema_decay) if t.ema_decay > 0 else None

    def _schedule(self) -> None:
        """Batches per epoch, the run's length and the iteration of the learning-rate drop."""
        t = self.cfg.train
        self.sampler = EpochBatchSampler(len(self.train_set), t.batch_size, shuffle=True, seed=t.seed,
                                         rank=dist.rank(), world=dist.world_size(), drop_last=True)
        self.iters_per_epoch = self.sampler.batches_per_epoch()
        self.total_iters = t.iters if t.iters is not None else t.epochs * self.iters_per_epoch
        unit = 1 if t.iters is not None else self.iters_per_epoch
        self.drop_at = None if t.lr_drop is None else int(t.lr_drop * unit)
        if dist.is_main():
            schedule_warnings(t, self.total_iters, self.iters_per_epoch)

    def _restore(self) -> None:
        """The checkpoint's weights, optimizer, scaler, EMA, RNG and best-evaluation count when resuming; else
        each process seeds its own dropout and denoising noise (by rank), like distinct GPUs. A run that stopped
        early and is resumed with the same patience ends at once."""
        t = self.cfg.train
        self.iteration = 0
        self.guard, self.signals, self.stop_requested = NonFiniteGuard(t.max_nonfinite_skips), StopSignals(), False
        self.best, self.early_stopped = BestTracker(t.early_stop_patience, t.early_stop_min_delta), False
        self.last_eval: tuple[int, EvalResult | None] | None = None  # (iteration, result) of the latest evaluation
        self.missed_eval = False
        if self.resume_from is None:
            torch.manual_seed(t.seed + dist.rank())
            return
        iteration, weights, state_path = self.resume_from
        best = load_training_state(weights, state_path, self.model, self.optimizer, self.scaler, self.ema, self.device)
        self.best.load_state_dict(best)
        self.iteration, self.early_stopped = iteration, self.best.exhausted
        # a stop signal at an evaluation's iteration saves without evaluating: evaluate first on resuming
        self.missed_eval = bool(best) and self._evaluates_at(iteration) and best.get("last_iter") != iteration
        if dist.is_main():
            truncate_metrics(self.out_dir / "metrics.jsonl", iteration)
            print(f"resumed from {weights} at iteration {iteration}")
            if self.early_stopped:
                print(self.best.stop_message(iteration, self.total_iters))

    def _wrap(self) -> None:
        """DDP across processes, activation checkpointing, torch.compile (in place: the state dict and the
        evaluation see the same module)."""
        t = self.cfg.train
        # Without auxiliary losses the per-layer heads of refining models get no gradient.
        unused = not self.cfg.model.loss.aux_loss
        self.net = (DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                                            find_unused_parameters=unused)
                    if dist.is_dist() else self.model)
        set_activation_checkpointing(self.model, t.checkpoint_activations)
        if t.compile:
            compile_model(self.net, self.device)
        self.step = Step(self.net, self.model, self.criterion, self.optimizer, self.scaler, self.autocast, self.ema,
                         self.guard, self.signals, t.clip_max_norm)

    def _ready_line(self, seconds: float) -> str:
        """What was set up, and when the first progress line comes."""
        params = sum(p.numel() for p in self.model.parameters()) / 1e6
        val = f", {len(self.val_set)} validation" if self.val_set is not None else ", no validation"
        return (f"set up in {seconds:.1f} s: {params:.2f}M parameters, {len(self.train_set)} training images{val}; "
                f"iterations {self.iteration}..{self.total_iters} of batch {self.cfg.train.batch_size} "
                f"({self.iters_per_epoch} an epoch), a log line every {self.cfg.train.log_every}")

    # ------------------------------------------------------------------------------------ checkpoints
    def _save(self) -> None:
        save_training_state(self.out_dir / "checkpoints", self.iteration, self.model, self.cfg, self.label_map,
                            self.optimizer, self.scaler, self.ema, self.device, self.run_id, self.best.state_dict())
        if dist.is_main():
            ck.prune(self.out_dir, self.cfg.train.keep_last, self.own_run_ids)

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

    # -------------------------------------------------------------------------------------------- loop
    def _loader(self, epoch: int, start_batch: int) -> Any:
        self.sampler.set_epoch(epoch, start_batch)
        self.train_set.set_epoch(epoch)
        loader = DataLoader(self.train_set, batch_sampler=self.sampler, collate_fn=collate,
                            num_workers=self.cfg.data.num_workers, generator=torch.Generator().manual_seed(epoch),
                            pin_memory=self.device.type == "cuda")
        return iter(loader)

    def _evaluate(self, final: bool = False) -> EvalResult | None:
        """Score the weights (EMA when on) on the validation split, log AP and the validation loss, keep the best.
        After an early stop the final evaluation is the one that stopped the run (its files copied to ``eval/``;
        evaluated again, but not counted, when the run was resumed after it)."""
        if self.val_set is None:
            return None
        sub = self.out_dir / ("eval" if final else f"eval/iter_{self.iteration:07d}")
        if final and self.early_stopped and self.last_eval is not None:
            if dist.is_main():
                shutil.copytree(self.out_dir / f"eval/iter_{self.iteration:07d}", sub, dirs_exist_ok=True)
            return self.last_eval[1]
        model = self.ema.module if self.ema is not None else self.model
        result = evaluate(model, self.val_set, self.device, batch_size=self.cfg.train.batch_size,
                          num_workers=self.cfg.data.num_workers, out_dir=sub if dist.is_main() else None,
                          threshold=self.cfg.train.eval_threshold, autocast=self.autocast, progress=self.progress,
                          criterion=self.criterion)
        if final and self.early_stopped:
            return result
        if result is not None:
            self.log.write({"type": "eval", "iter": self.iteration, **result.metrics, **result.losses})
        self._keep_best(model, result)
        self.last_eval = (self.iteration, result)
        return result

    def _keep_best(self, model: Detector, result: EvalResult | None) -> None:
        """Count the evaluation (every process, on the main process's AP) and write ``best.safetensors`` when it
        improves on the best (atomic: a kill leaves the previous best)."""
        ap = dist.all_gather_objects(result.metrics.get("AP", math.nan) if result is not None else None)[0]
        if self.best.update(ap, self.iteration) and dist.is_main():  # type: ignore[arg-type]
            ck.save_model(model, self.cfg, self.label_map, self.out_dir / BEST_WEIGHTS, iteration=self.iteration,
                          run_id=self.run_id)

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

    def _log_window(self, window: list[dict[str, torch.Tensor]], epoch: int, factor: float, bar: TrainProgress) -> None:
        # average each key over the steps that have it: denoising terms are absent on GT-free batches
        keys = dict.fromkeys(k for w in window for k in w)
        record: dict[str, Any] = {k: float(torch.stack([w[k] for w in window if k in w]).float().mean()) for k in keys}
        record.update(type="train", iter=self.iteration, epoch=epoch, lr=self.cfg.train.lr * factor)  # the transformer's
        self.log.write(record)
        bar.record(self.iteration, record)

    def _after_step(self) -> None:
        """Evaluate, checkpoint, stop (a signal, non-finite steps, no improvement) and score stability on their
        iterations. The evaluation comes before the checkpoint, so the checkpoint holds its verdict (a resumed
        run stops early where the uninterrupted one does); a stop skips it."""
        t, last = self.cfg.train, self.iteration == self.total_iters
        stopping = self.guard.exhausted or (self.stop_requested and not last)
        if self._evaluates_at(self.iteration) and not stopping:
            self._periodic_evaluation()
        saved = self.iteration % t.checkpoint_every == 0 or last or self.early_stopped
        if saved:
            self._save()
        if stopping:
            self._stop(saved=saved)
        if t.unstable_every and self.iteration % t.unstable_every == 0:
            self._log_unstable()

    def _evaluates_at(self, iteration: int) -> bool:
        """Whether a periodic evaluation belongs to ``iteration`` (the last one has the final evaluation)."""
        every = self.cfg.train.eval_every
        return bool(every) and 0 < iteration < self.total_iters and iteration % every == 0

    def _periodic_evaluation(self) -> None:
        """Evaluate, and stop early (one line) when ``train.early_stop_patience`` evaluations brought nothing."""
        self._evaluate()
        self.early_stopped = self.best.exhausted
        if self.early_stopped and dist.is_main():
            print(self.best.stop_message(self.iteration, self.total_iters), flush=True)

    def _run(self) -> TrainResult:
        t, start = self.cfg.train, time.time()
        if dist.is_main():
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.json").write_text(self.cfg.to_json())
        self.log = RunLog(self.out_dir, t.tensorboard, dist.is_main())
        self.model.train()
        if self.missed_eval:
            self._periodic_evaluation()
        bar = TrainProgress(self.total_iters, self.iteration, bar=self.progress, enabled=dist.is_main())
        data_iter, window = None, []
        while self.iteration < self.total_iters and not self.early_stopped:
            epoch, in_epoch = divmod(self.iteration, self.iters_per_epoch)
            if data_iter is None or in_epoch == 0:
                data_iter = self._loader(epoch, in_epoch)
            factor = lr_factor(self.iteration, self.drop_at, t.lr_drop_factor, t.warmup_iters)
            set_lr(self.optimizer, factor)
            logs = self.step(next(data_iter).to(self.device, non_blocking=True), self.iteration)
            self.stop_requested = self.step.stop_requested
            self.iteration += 1
            bar.update()
            if logs is not None:
                window.append(logs)
            if window and (self.iteration % t.log_every == 0 or self.iteration == self.total_iters):
                self._log_window(window, epoch, factor, bar)
                window = []
            self._after_step()
        bar.close()
        return self._finish(start)

    def _finish(self, start: float) -> TrainResult:
        """``model.safetensors`` (saved before the final evaluation, so no evaluation error loses it), the final
        evaluation, and the result."""
        final = self.ema.module if self.ema is not None else self.model
        if dist.is_main():
            ck.save_model(final, self.cfg, self.label_map, self.out_dir / "model.safetensors",
                          iteration=self.iteration, run_id=self.run_id)
        evaluation = self._evaluate(final=True)
        dist.barrier()
        self.log.close()
        main = dist.is_main()
        return TrainResult(self.out_dir, self.iteration, evaluation, time.time() - start,
                           final if main else None, self.cfg if main else None, self.label_map if main else None,
                           self.early_stopped)


def _start_line(cfg: Config, out_dir: Path, device: torch.device, resume: bool) -> str:
    """``training PRESET on DATA -> OUT (device, N processes)``: printed before anything slow."""
    d = cfg.data
    data = d.path or d.train_images or "?"
    n = dist.world_size()
    return (f"{'resuming' if resume else 'training'} {cfg.preset or 'a custom config'} on {data} -> {out_dir} "
            f"({device}, {n} process{'es' if n > 1 else ''})")


def train(cfg: Config, out_dir: str | os.PathLike, device: str = "auto", resume: bool = False, progress: bool = True,
          exist_ok: bool = False, val: bool = True, initial: Initial | None = None) -> TrainResult:
    """Train ``cfg`` on the dataset its ``data`` section names; see :class:`Trainer` (and ``engine/run_dir.py``
    for ``resume`` / ``exist_ok``)."""
    return Trainer(cfg, out_dir, device, resume, progress, exist_ok, val, initial).run()
