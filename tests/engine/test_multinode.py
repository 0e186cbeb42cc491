"""Scale-out: two torchrun "nodes" (one process each, c10d rendezvous on loopback, gloo on the CPU) train,
stop at a checkpoint and resume across both nodes, and end with the same weights, bit for bit, as one node
running two processes through the same schedule and resume. Rank, not host, decides a process's data shard
and random stream, and the checkpoint holds every rank's stream, so the layout of processes on machines does
not show in the result.

``slow`` (six torchrun launches, 1-3 minutes on 2 cores): ``python -m pytest -q -m slow tests/engine/test_multinode.py``.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import MICRO
from test_distributed_faults import _port

TIMEOUT_S = 300


def _train_args(synth_dir: Path, out: Path, iters: int, resume: bool) -> list[str]:
    # dropout: each rank draws its own noise, which the resumed run must continue per rank
    sets = MICRO + ["data.num_workers=0", "train.checkpoint_every=2", "train.lr_drop=1000", "model.transformer.dropout=0.1"]
    args = ["-m", "matchdetr", "train", "--model", "detr-tiny", "--data", str(synth_dir), "--out", str(out),
            "--iters", str(iters), "--batch-size", "2", "--seed", "5", "--device", "cpu", "--no-val", "--no-progress"]
    return args + sum((["--set", s] for s in sets), []) + (["--resume"] if resume else [])


def _check(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        try:
            _, err = p.communicate(timeout=TIMEOUT_S)
        finally:
            for q in procs:
                if q.poll() is None:
                    q.kill()
        assert p.returncode == 0, err[-3000:]


def _two_nodes(train: list[str]) -> None:
    """Both "nodes" of one job: the same command line, one rendezvous endpoint and job id."""
    port, job = _port(), uuid.uuid4().hex[:8]
    node = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
            "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", job,
            "--local-addr", "127.0.0.1"]
    _check([subprocess.Popen(node + train, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)])


def _one_node(train: list[str]) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_port())]
    _check([subprocess.Popen(cmd + train, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)])


def _env() -> dict[str, str]:
    import os

    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


@pytest.mark.slow
def test_two_nodes_train_and_resume_like_one_node_with_two_processes(synth_dir, tmp_path):
    nodes, single = tmp_path / "two_nodes", tmp_path / "one_node"
    halfway = {}
    for launch, out in ((_two_nodes, nodes), (_one_node, single)):
        launch(_train_args(synth_dir, out, 2, resume=False))
        (checkpoint,) = (out / "checkpoints").glob("*.safetensors")  # iteration 2, where the resume starts
        halfway[out] = load_file(str(checkpoint))
        launch(_train_args(synth_dir, out, 4, resume=True))
    a, b = load_file(str(nodes / "model.safetensors")), load_file(str(single / "model.safetensors"))
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    assert all(torch.equal(halfway[nodes][k], halfway[single][k]) for k in a)
    assert any(not torch.equal(halfway[nodes][k], a[k]) for k in a)  # the resumed iterations changed the weights
