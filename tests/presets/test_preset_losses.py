"""Refactors keep every loss term: each tiny preset's training forward and criterion on fixed inputs and fixed
initial weights give, term by term, the values saved in tests/fixtures/preset_losses.pt, bit for bit (same
machine type, one thread order; the values were saved by main at e8967b5, before the config schema moved to
per-component configs). Regenerate ONLY for an intended change of a preset's training signal, with
``python tests/presets/test_preset_losses.py NAME``, and say why in the commit."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from matchdetr import presets
from matchdetr.structures import Target

SAVED = Path(__file__).parents[1] / "fixtures" / "preset_losses.pt"
TINY = [n for n in presets.names() if n.endswith("-tiny")]
H, W = 160, 224


def _targets(masks: bool) -> list[Target]:
    g = torch.Generator().manual_seed(2)
    out = []
    for i, n in enumerate((3, 1)):
        cxcy = torch.rand(n, 2, generator=g) * 0.6 + 0.2
        wh = torch.rand(n, 2, generator=g) * 0.3 + 0.05
        m = torch.rand(n, H, W, generator=g) > 0.5 if masks else None
        out.append(Target(torch.cat((cxcy, wh), 1), torch.randint(0, 5, (n,), generator=g), image_id=i,
                          orig_size=(H, W), size=(H, W), masks=m))
    return out


def losses(name: str) -> dict[str, torch.Tensor]:
    import matchdetr
    from matchdetr.compose import build_criterion

    torch.manual_seed(0)
    det = matchdetr.build(name, num_classes=5, **{"backbone.weights": ""}).train()
    criterion = build_criterion(det.config.model)
    images = torch.randn(2, 3, H, W, generator=torch.Generator().manual_seed(1))
    targets = _targets(det.config.data.masks)
    torch.manual_seed(3)  # denoising noise
    out = det(images, None, targets)
    torch.manual_seed(4)  # the mask losses' point sampling
    loss = criterion(out, targets)
    return {k: v.detach() for k, v in loss.losses.items()} | {"total": loss.total.detach()}


@pytest.mark.parametrize("name", TINY)
def test_loss_terms_unchanged(name: str) -> None:
    saved = torch.load(SAVED)
    if name not in saved:
        pytest.fail(f"{name} has no saved losses: a new preset? run python {Path(__file__).name} {name}")
    got = losses(name)
    assert sorted(got) == sorted(saved[name]), f"{name}: the loss terms differ"
    changed = {k: (float(got[k]), float(v)) for k, v in saved[name].items() if not torch.equal(got[k], v)}
    assert not changed, f"{name}: {changed}"


if __name__ == "__main__":
    old = torch.load(SAVED) if SAVED.exists() else {}
    names = sys.argv[1:] or [n for n in TINY if n not in old]
    old.update({n: losses(n) for n in names})
    torch.save(old, SAVED)
    print(f"saved {', '.join(names) or 'nothing new'} to {SAVED}")
