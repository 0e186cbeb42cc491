"""The correctness parts of ``matchdetr bench gpu``: (d) device-vs-float64-CPU parity of every op and of a
whole forward pass, (e) a bf16 training run that must have no non-finite step. Same job protocol as
``gpu_bench_parts.py``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from .gpu_bench_parts import Emit, _images, _model, encoder_inputs


def _max_diff(got: Tensor, want: Tensor) -> float:
    return float((got.detach().double().cpu() - want.detach().double()).abs().max()) if want.numel() else 0.0


def _rel_diff(got: Tensor, want: Tensor) -> float:
    """The largest difference relative to the reference's largest magnitude (gradients w.r.t. sampling
    locations are in map pixels per unit, so their absolute differences say little alone)."""
    return _max_diff(got, want) / max(float(want.detach().abs().max()), 1e-30) if want.numel() else 0.0


def _op_parity(fn: Callable[..., Tensor], args: list[Tensor], device: torch.device) -> dict[str, float]:
    """``fn`` on ``device`` in float32 against float64 on the CPU: output and every input gradient (for a
    fixed random upstream gradient)."""
    results = []
    for where, dtype in ((torch.device("cpu"), torch.float64), (device, torch.float32)):
        leaves = [a.detach().to(device=where, dtype=dtype).requires_grad_() if a.is_floating_point() else a.to(where)
                  for a in args]
        out = fn(*leaves)
        upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        (out * upstream.to(where, dtype)).sum().backward()
        results.append((out, [leaf.grad for leaf in leaves if leaf.is_floating_point() and leaf.grad is not None]))
    (want, want_grads), (got, got_grads) = results
    pairs = list(zip(got_grads, want_grads))
    return {"max_abs_diff": _max_diff(got, want), "max_rel_diff": _rel_diff(got, want),
            "max_abs_diff_grad": max((_max_diff(g, w) for g, w in pairs), default=0.0),
            "max_rel_diff_grad": max((_rel_diff(g, w) for g, w in pairs), default=0.0)}


def parity(plan: dict[str, Any], emit: Emit, deadline: float) -> None:
    """Deformable attention, RoIAlign, NMS and one forward of ``plan['parity_preset']``. TF32 is off, so the
    differences are the float32 kernels' own."""
    from ..ops.ms_deform_attn import ms_deform_attn
    from ..ops.nms import batched_nms, nms
    from ..ops.roi_align import roi_align

    device = torch.device(plan["device"])
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    emit({"op": "ms_deform_attn", "status": "ok", "shape": "640x640 encoder levels, 300 queries, batch 2",
          **_op_parity(ms_deform_attn, encoder_inputs((640, 640), 2, dtype=torch.float64, queries=300), device)})
    g = torch.Generator().manual_seed(3)
    features = torch.randn(2, 32, 40, 60, generator=g, dtype=torch.float64)
    corner = torch.rand(2, 50, 2, generator=g, dtype=torch.float64) * torch.tensor([50.0, 30.0], dtype=torch.float64)
    boxes = torch.cat((corner, corner + 1 + torch.rand(2, 50, 2, generator=g, dtype=torch.float64) * 20), -1)
    emit({"op": "roi_align", "status": "ok", "shape": "[2, 32, 40, 60] map, 50 boxes per image, 7x7, adaptive",
          **_op_parity(lambda f, b: roi_align(f, b, 7, 1.0, -1, True), [features, boxes], device)})
    xy = torch.rand(500, 2, generator=g, dtype=torch.float64) * 400
    nms_boxes = torch.cat((xy, xy + 10 + torch.rand(500, 2, generator=g, dtype=torch.float64) * 60), -1)
    scores = torch.rand(500, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 5, (500,), generator=g)
    for name, run in (("nms", lambda b, s: nms(b, s, 0.5)), ("batched_nms", lambda b, s: batched_nms(b, s, labels.to(b.device), 0.5))):
        want = run(nms_boxes, scores).tolist()
        got = run(nms_boxes.to(device, torch.float32), scores.to(device, torch.float32)).cpu().tolist()
        emit({"op": name, "status": "ok", "shape": "500 boxes, IoU 0.5", "kept": len(want),
              "mismatched_kept": len(set(want) ^ set(got)), "same_order": got == want})
    if time.time() > deadline:
        emit({"op": f"forward {plan['parity_preset']}", "status": "skipped", "error": "time budget spent"})
        return
    reference = _model(plan, plan["parity_preset"], torch.device("cpu"), torch.float64).eval()
    model = copy.deepcopy(reference).to(device=device, dtype=torch.float32)
    images = _images(1, tuple(plan["parity_size"]), torch.device("cpu")).double()
    with torch.no_grad():
        want, got = reference(images), model(images.to(device, torch.float32))
    emit({"op": f"forward {plan['parity_preset']}", "status": "ok", "shape": f"{plan['parity_size']} image, batch 1",
          "max_abs_diff": max(_max_diff(got.logits, want.logits), _max_diff(got.boxes, want.boxes)),
          "logits_max_abs_diff": _max_diff(got.logits, want.logits), "boxes_max_abs_diff": _max_diff(got.boxes, want.boxes)})


def bf16_train(plan: dict[str, Any], emit: Emit, deadline: float) -> None:
    """``plan['stable_iters']`` iterations of the trainer itself (bf16 autocast on CUDA; the CPU trains float32)
    on a small synthetic set; every iteration must log a finite loss and gradient norm."""
    from .. import api, presets
    from ..config import apply_overrides
    from ..data.synthetic import generate

    device = torch.device(plan["device"])
    work = Path(plan["work_dir"])
    data, run = work / "bf16_data", work / "bf16_run"
    generate(data, num_train=plan["stable_images"], num_val=0, min_side=plan["stable_sides"][0],
             max_side=plan["stable_sides"][1], max_objects=6, seed=0, progress=False)
    amp = plan["amp"] if device.type == "cuda" else "none"
    iters = plan["stable_iters"]
    cfg = apply_overrides(presets.get(plan["stable_preset"]), plan["overrides"] + [
        f"train.amp={amp}", f"train.iters={iters}", f"train.batch_size={plan['stable_batch']}", "train.log_every=1",
        f"train.checkpoint_every={iters}", f"train.lr_drop={iters}", "train.warmup_iters=0",
        f"data.num_workers={plan['workers']}"])
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the trainer's line per iteration
        api.train(cfg, data, run, device=plan["device"], progress=False, val=False)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r.get("type") == "train"]
    finite = [r for r in steps if all(math.isfinite(r[k]) for k in ("loss", "grad_norm") if r.get(k) is not None)]
    emit({"preset": plan["stable_preset"], "status": "ok", "amp": amp, "iters": iters, "batch": plan["stable_batch"],
          "finite_steps": len(finite), "nonfinite_steps": iters - len(finite), "first_loss": steps[0]["loss"],
          "last_loss": steps[-1]["loss"], "seconds": time.perf_counter() - start, "run_dir": str(run)})
