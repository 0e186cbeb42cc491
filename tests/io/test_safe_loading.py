"""Safe loading (issue #9 item 5): a crafted pickle is refused with one line and its code never runs; every
reader in the package uses safetensors, ``torch.load(weights_only=True)``, JSON or a safe YAML load."""

from __future__ import annotations

import pathlib
import re
from pathlib import Path

import pytest
import torch

from matchdetr.engine import checkpoint as ck

PACKAGE = Path(__file__).resolve().parents[2] / "matchdetr"


class Payload:
    """Unpickling this calls ``Path.touch(marker)``: a stand-in for ``os.system`` that leaves evidence."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def crafted(path: Path, marker: Path) -> Path:
    torch.save({"optimizer": {}, "rng": [], "iteration": 3, "evil": Payload(marker)}, path)
    return path


def test_the_payload_is_live(tmp_path):
    """Control: an unsafe ``torch.load`` of the same file does run the code, so the refusals below mean something."""
    marker = tmp_path / "ran"
    torch.load(crafted(tmp_path / "x.pt", marker), weights_only=False)
    assert marker.exists()


def test_training_state_with_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = crafted(tmp_path / "iter_0000003.state.pt", marker)
    with pytest.raises(ck.CheckpointError) as info:
        ck.load_state(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: refused by torch.load(weights_only=True)")
    assert "which could run code" in message and not marker.exists()


def test_resume_from_a_crafted_checkpoint_is_one_line_and_runs_nothing(synth_dir, tmp_path, capsys):
    from matchdetr.engine.checkpoint import save_model

    from matchdetr import api
    from matchdetr.cli import main

    marker = tmp_path / "ran"
    det = api.build("detr-tiny", num_classes=10, transformer__hidden_dim=32,
                    transformer__num_heads=4, transformer__dim_feedforward=64, transformer__enc_layers=1,
                    transformer__dec_layers=1, transformer__num_queries=5)
    run = tmp_path / "run"
    from matchdetr.data.coco import CocoDetection, resolve_split
    from matchdetr.data.transforms import build_transforms

    det.label_map = CocoDetection(resolve_split(synth_dir, "train"), build_transforms(det.config.data, False)).label_map
    (run / "checkpoints").mkdir(parents=True)
    crafted(run / "checkpoints" / "iter_0000003.state.pt", marker)
    save_model(det.module, det.config, det.label_map, run / "checkpoints" / "iter_0000003.safetensors", iteration=3)
    code = main(["train", "--model", "detr-tiny", "--data", str(synth_dir), "--out", str(run), "--iters", "5",
                 "--resume", "--no-val", "--no-progress", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("matchdetr: error: ") and "iter_0000003.state.pt: refused by torch.load" in err
    assert not marker.exists()


def test_backbone_weights_with_code_are_refused(tmp_path):
    from matchdetr.interop.torchvision_resnet import read_state_dict

    marker = tmp_path / "ran"
    with pytest.raises(ValueError, match=r"refused by torch.load\(weights_only=True\)"):
        read_state_dict(crafted(tmp_path / "resnet50.pth", marker))
    assert not marker.exists()


def test_a_pickle_is_never_loaded_as_a_model(tmp_path):
    from matchdetr import api

    marker = tmp_path / "ran"
    with pytest.raises(ck.CheckpointError, match="not a readable safetensors file"):
        api.load(crafted(tmp_path / "model.pth", marker))
    assert not marker.exists()


# -------------------------------------------------------------------------------------------- source audit
UNSAFE = [
    (re.compile(r"\bpickle\.loads?\(|\bcPickle\b|\bdill\b|\bshelve\b|\bmarshal\.loads?\("), "unpickling"),
    (re.compile(r"(?<![\w.])(?<!def )(eval|exec)\("), "eval/exec"),  # a call, not a method named eval
    (re.compile(r"\byaml\.(load|unsafe_load|full_load)\("), "an unsafe YAML load"),
    (re.compile(r"allow_pickle\s*=\s*True"), "numpy pickles"),
    (re.compile(r"\bjsonpickle\b|\bruamel\b"), "an object-building loader"),
]


def _calls(text: str, name: str) -> list[str]:
    """The full argument text of each ``name(`` call (balanced parentheses)."""
    out = []
    for m in re.finditer(re.escape(name) + r"\(", text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        out.append(text[m.end(): i - 1])
    return out


def test_every_reader_in_the_package_is_safe():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())  # comments may name the bad calls
        for args in _calls(code, "torch.load"):
            if not re.search(r"weights_only\s*=\s*True", args):
                problems.append(f"{path.relative_to(PACKAGE)}: torch.load({args.strip()}) without weights_only=True")
        for pattern, what in UNSAFE:
            for m in pattern.finditer(code):
                line = code[: m.start()].count("\n") + 1
                problems.append(f"{path.relative_to(PACKAGE)}:{line}: {what}")
    assert not problems, "\n".join(problems)
