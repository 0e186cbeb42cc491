"""Training engine: runs end to end, resumes bit-exactly after kill -9, and runs under torchrun (gloo)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import MICRO

from matchdetr import api, presets
from matchdetr.config import apply_overrides, train_config
from matchdetr.data.coco import resolve_split
from matchdetr.engine import checkpoint as ck
from matchdetr.engine.train import train


def micro_cfg(**train_opts):
    cfg = presets.get("detr-tiny")
    apply_overrides(cfg, MICRO)
    for k, v in train_opts.items():
        setattr(cfg.train, k, v)
    return cfg


def test_train_eval_save_load(synth_dir, tmp_path):
    cfg = micro_cfg(iters=6, batch_size=4, checkpoint_every=3, eval_every=3, keep_last=1)
    cfg.data.num_workers = 0
    res = train(train_config(cfg, synth_dir), tmp_path, device="cpu", progress=False)
    assert res.iterations == 6 and res.evaluation is not None
    assert set(res.evaluation.metrics) >= {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert [i for i, _, _ in ck.checkpoint_paths(tmp_path)] == [6]  # keep_last=1 pruned iteration 3
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {l["type"] for l in lines} == {"train", "eval"}
    assert all("loss_class_aux0" in l for l in lines if l["type"] == "train")
    for name in ("results.json", "metrics.json"):
        assert (tmp_path / "eval" / name).exists()
    det = api.load(tmp_path)
    assert det.label_map.category_ids == res_label_ids(synth_dir)
    ref = load_file(str(tmp_path / "model.safetensors"))
    assert all(torch.equal(ref[k], v) for k, v in det.state_dict().items())


def test_resume_without_checkpoint_starts_fresh(synth_dir, tmp_path, capsys):
    cfg = micro_cfg(iters=1, batch_size=2)
    cfg.data.num_workers = 0
    res = train(train_config(cfg, synth_dir), tmp_path, val=False, device="cpu", resume=True, progress=False)
    assert res.iterations == 1 and "starting from scratch" in capsys.readouterr().out


def res_label_ids(synth_dir):
    return sorted(c["id"] for c in json.loads((synth_dir / "annotations" / "instances_train.json").read_text())["categories"])


def _train_cmd(synth_dir, out, iters):
    sets = MICRO + ["train.checkpoint_every=2", "data.num_workers=2", "model.transformer.dropout=0.1"]
    cmd = [sys.executable, "-m", "matchdetr", "train", "--model", "detr-tiny", "--data", str(synth_dir), "--out", str(out),
           "--iters", str(iters), "--batch-size", "4", "--seed", "7", "--device", "cpu", "--no-val", "--no-progress"]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def test_kill9_then_resume_is_bit_identical(synth_dir, tmp_path, cli_env):
    iters = 10
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    subprocess.run(_train_cmd(synth_dir, ref_dir, iters), check=True, env=cli_env, capture_output=True, timeout=300)
    proc = subprocess.Popen(_train_cmd(synth_dir, run_dir, iters), env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not any(i >= 4 for i, _, _ in ck.checkpoint_paths(run_dir)):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = [i for i, _, _ in ck.checkpoint_paths(run_dir)]
    assert done and max(done) < iters, f"the run was not interrupted mid-way (checkpoints {done})"
    assert not (run_dir / "model.safetensors").exists()
    resumed = subprocess.run(_train_cmd(synth_dir, run_dir, iters) + ["--resume"], env=cli_env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from" in resumed.stdout
    a, b = load_file(str(ref_dir / "model.safetensors")), load_file(str(run_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    iters_logged = [json.loads(l)["iter"] for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert iters_logged == sorted(set(iters_logged))  # the killed run's tail was not duplicated


def test_torchrun_two_processes_on_cpu(synth_dir, tmp_path, cli_env):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "matchdetr"] + _train_cmd(synth_dir, tmp_path, 4)[3:]
    cmd = [c for c in cmd if c != "--no-val"] + ["--set", "data.num_workers=0"]
    proc = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "model.safetensors").exists()
    assert "AP" in proc.stdout  # the main process printed the evaluation table once
    assert proc.stdout.count("trained 4 iterations") == 1


@pytest.mark.parametrize("name", [n for n in presets.names() if n.endswith("-tiny")])
def test_every_tiny_preset_trains_and_predicts(name, synth_dir, tmp_path, capsys):
    """Train through the CLI (2 iterations, micro sizes), predict through the CLI and the Python API."""
    from matchdetr.cli import main

    sets = sum((["--set", s] for s in MICRO + ["data.num_workers=0"]), [])
    assert main(["train", "--model", name, "--data", str(synth_dir), "--out", str(tmp_path / "run"), "--iters", "2",
                 "--batch-size", "2", "--device", "cpu", "--no-progress", *sets]) == 0
    assert "AP" in capsys.readouterr().out
    image = sorted((synth_dir / "val").iterdir())[0]
    assert main(["predict", str(image), "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "pred"),
                 "--threshold", "0", "--device", "cpu"]) == 0
    assert (tmp_path / "pred" / f"{image.stem}.png").exists()
    det = api.load(tmp_path / "run")
    assert det.config.preset == name
    out = det.predict([str(image)], threshold=0.0)
    assert out[0]["boxes"].shape[1] == 4 and len(out[0]["names"]) == len(out[0]["scores"])


def test_torchrun_resume_is_bit_identical(synth_dir, tmp_path, cli_env):
    """Each process resumes its own random stream: 2 processes, dropout and denoising noise (dn-deformable)."""
    def cmd(out, iters, resume=False):
        sets = MICRO + ["data.num_workers=0", "train.checkpoint_every=2", "train.lr_drop=1000", "model.transformer.dropout=0.1"]
        c = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29534",
             "-m", "matchdetr", "train", "--model", "dn-deformable-detr-tiny", "--data", str(synth_dir), "--out", str(out),
             "--iters", str(iters), "--batch-size", "2", "--seed", "3", "--device", "cpu", "--no-val", "--no-progress"]
        return c + sum((["--set", s] for s in sets), []) + (["--resume"] if resume else [])

    for args in (cmd(tmp_path / "ref", 4), cmd(tmp_path / "run", 2), cmd(tmp_path / "run", 4, resume=True)):
        proc = subprocess.run(args, env=cli_env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = load_file(str(tmp_path / "ref" / "model.safetensors")), load_file(str(tmp_path / "run" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
