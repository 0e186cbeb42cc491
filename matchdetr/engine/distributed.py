"""Distributed helpers: everything degrades to a single process when torch.distributed is not initialised.

Launch with ``torchrun --nproc_per_node N -m matchdetr train ...``: gloo on CPU, nccl on CUDA.
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist
from torch import Tensor


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    return rank() == 0


def init_from_env(device: str) -> torch.device:
    """Initialise the process group when launched by torchrun (``WORLD_SIZE`` > 1) and pick the device.

    device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` | ``mps``. Under torchrun each process takes
    ``cuda:LOCAL_RANK``.
    """
    from .device import resolve_device

    device = resolve_device(device)  # one line for a malformed or absent device, before any work
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not is_dist():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device.startswith("cuda"):
            torch.cuda.set_device(local)
            device = f"cuda:{local}"
        backend = "nccl" if device.startswith("cuda") else "gloo"
        # A bounded timeout: if one worker dies the others fail instead of hanging forever.
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    return torch.device(device)


def all_reduce_sum(x: Tensor) -> tuple[Tensor, int]:
    """Sum ``x`` over processes (a copy); returns it with the world size."""
    if not is_dist():
        return x, 1
    y = x.clone()
    dist.all_reduce(y)
    return y, world_size()


def barrier() -> None:
    if is_dist():
        dist.barrier()


def cleanup() -> None:
    if is_dist():
        dist.destroy_process_group()


def all_gather_objects(obj: object) -> list[object]:
    """Gather a picklable Python object from every process (for evaluation results)."""
    if not is_dist():
        return [obj]
    out: list[object] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


# Messages of a collective that failed because another process died or stopped answering (gloo, NCCL, the store).
_PEER_FAILURE = ("connection reset", "connection closed", "connection refused", "broken pipe", "timed out", "timeout",
                 "nccl", "gloo", "socket", "recvbytes", "sendbytes")


def peer_failure(err: BaseException) -> str | None:
    """A one-line explanation when ``err`` is a collective failing because of another process, else None.

    The process whose own code failed prints its traceback; its peers, whose collectives then fail, say so in
    one line instead of a second, misleading traceback.
    """
    if not is_dist() or not isinstance(err, RuntimeError):
        return None
    text = " ".join(str(err).split())
    if not any(key in text.lower() for key in _PEER_FAILURE):
        return None
    return (f"rank {rank()}: a collective operation failed, so another process died, raised or hung "
            f"(see its own output): {text[:200]}")
