"""`matchdetr bench profile`: every phase of a training iteration timed on the trainer's own step, the backward
charged to the parts, on a micro preset (the figures themselves are measured alone, docs/benchmarks.md)."""

from __future__ import annotations

from conftest import MICRO

from matchdetr.analysis.profile import profile_training, report


def test_profile_times_every_phase_and_charges_the_backward(synth_dir) -> None:
    p = profile_training("dino-tiny", synth_dir, iters=1, warmup=1, batch_size=2, overrides=MICRO, workers=0)
    for phase in ("data wait", "backbone: frozen blocks", "backbone: trained blocks", "encoder", "query selection",
                  "denoising", "decoder", "matching", "loss: class", "loss: boxes", "optimizer",
                  "backward + guard + logging"):
        assert phase in p.phases and p.phases[phase] >= 0, phase
    assert p.phases["backbone: frozen blocks"] > 0 and p.phases["matching"] > 0
    assert sum(v for k, v in p.phases.items() if k != "iteration") <= p.step_ms * 1.001
    assert {"backbone", "encoder", "decoder"} <= set(p.backward_by_part) and p.ops_forward > 0 < p.ops_backward
    assert p.hungarian_calls == 2 * (2 + 1)  # 2 images x (2 decoder layers + the proposals); denoising is not matched
    assert "| **iteration** |" in report([p])
