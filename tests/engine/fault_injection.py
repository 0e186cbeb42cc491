"""Run ``matchdetr`` with an injected fault, for the crash tests (not collected by pytest: no ``test_`` prefix).

    python tests/engine/fault_injection.py train ...            # same arguments as ``python -m matchdetr``
    torchrun --nproc_per_node 2 tests/engine/fault_injection.py train ...

Faults, chosen by environment variables:
- ``FAULT_HANG_SAVE=N`` and ``FAULT_MARKER=PATH``: the weights file of the iteration-N checkpoint is written
  halfway to its temporary file, PATH is created, and the process sleeps, so the test can SIGKILL it in the
  middle of a checkpoint write.
- ``FAULT_RANK=R``, ``FAULT_ITER=I``, ``FAULT_KIND=raise|kill``: process R raises (or SIGKILLs itself) at the
  start of iteration I.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path


def _hang_in_checkpoint_write(iteration: int, marker: Path) -> None:
    from matchdetr.engine import checkpoint as ck

    real = ck.atomic_write

    def hanging(path, write):
        path = Path(path)
        if path.name != f"{ck.checkpoint_name(iteration)}.safetensors":
            return real(path, write)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # as atomic_write does
        os.close(fd)
        write(tmp)
        os.truncate(tmp, os.path.getsize(tmp) // 2)  # half written, not yet renamed
        marker.write_text(tmp)
        time.sleep(600)

    ck.atomic_write = hanging


def _fail_on_rank(rank: int, iteration: int, kind: str) -> None:
    from matchdetr.engine import distributed as dist
    from matchdetr.engine.step import Step

    real = Step.__call__

    def faulty(self, batch, it):
        if dist.rank() == rank and it == iteration:
            if kind == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"injected fault on rank {rank} at iteration {iteration}")
        return real(self, batch, it)

    Step.__call__ = faulty


def main() -> int:
    env = os.environ
    if "FAULT_HANG_SAVE" in env:
        _hang_in_checkpoint_write(int(env["FAULT_HANG_SAVE"]), Path(env["FAULT_MARKER"]))
    if "FAULT_RANK" in env:
        _fail_on_rank(int(env["FAULT_RANK"]), int(env["FAULT_ITER"]), env.get("FAULT_KIND", "raise"))
    from matchdetr.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
