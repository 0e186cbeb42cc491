"""Refactors keep every model's outputs: each tiny preset's eval forward on a fixed input, from fixed initial
weights, against the one saved in tests/fixtures/preset_outputs.pt (regenerate ONLY for an intended change of a
preset, with ``python tests/presets/test_preset_outputs.py``, and say why in the commit).

The tolerance covers float rounding across CPUs and thread counts (matmul order), not a changed layer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import matchdetr
from matchdetr import presets

SAVED = Path(__file__).parents[1] / "fixtures" / "preset_outputs.pt"
TINY = [n for n in presets.names() if n.endswith("-tiny")]


def forward(name: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    det = matchdetr.build(name, num_classes=5, **{"backbone.weights": ""}).eval()
    images = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = det(images)
    return {"logits": out.logits, "boxes": out.boxes}


@pytest.mark.parametrize("name", TINY)
def test_outputs_unchanged(name: str) -> None:
    saved = torch.load(SAVED)
    if name not in saved:
        pytest.fail(f"{name} has no saved output: a new preset? run python {Path(__file__).name} to add it")
    got = forward(name)
    for key, want in saved[name].items():
        torch.testing.assert_close(got[key], want, rtol=1e-4, atol=1e-4, msg=f"{name} {key}")


if __name__ == "__main__":
    old = torch.load(SAVED) if SAVED.exists() else {}
    names = sys.argv[1:] or [n for n in TINY if n not in old]
    old.update({n: forward(n) for n in names})
    torch.save(old, SAVED)
    print(f"saved {', '.join(names) or 'nothing new'} to {SAVED}")
