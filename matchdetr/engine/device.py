"""``--device`` strings: checked and resolved before any work, one line when the device is not there."""

from __future__ import annotations

import re
import warnings
from functools import partial
from typing import Any

import torch

_FORM = re.compile(r"^(auto|cpu|mps|cuda(?::(\d+))?)$")


class DeviceError(ValueError):
    """A ``--device`` that is malformed or not present on this machine."""


def resolve_device(spec: str) -> str:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` | ``mps`` -> a device string torch accepts, checked to exist.

    ``auto`` is ``cuda`` when CUDA is available, else ``cpu``.
    """
    text = str(spec).strip().lower()
    found = _FORM.match(text)
    if found is None:
        raise DeviceError(f"--device {spec!r}: expected auto, cpu, cuda, cuda:N or mps")
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {spec}: CUDA is not available here (torch {torch.__version__}, "
                              f"{'built without CUDA' if torch.version.cuda is None else 'no GPU visible'}); "
                              "use --device cpu")
        index = found.group(2)
        if index is not None and int(index) >= torch.cuda.device_count():
            raise DeviceError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) here "
                              f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    if text == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise DeviceError(f"--device {spec}: MPS (Apple GPU) is not available here; use --device cpu")
    return text


def autocast_for(device: torch.device, amp: str) -> Any:
    """``train.amp`` (none | bf16 | fp16) -> a ``torch.autocast`` factory, or None for fp32 (also off CUDA, with
    a warning)."""
    if amp == "none":
        return None
    if amp not in ("bf16", "fp16"):
        raise ValueError(f"train.amp must be none, bf16 or fp16, got '{amp}'")
    if device.type != "cuda":
        warnings.warn(f"train.amp={amp} needs CUDA; running fp32 on {device.type}")
        return None
    return partial(torch.autocast, device_type="cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
