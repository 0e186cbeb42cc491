"""The comparisons ``docs/benchmarks.md`` shows, and the one command that regenerates each of its tables.

A convergence *study* is a named group of presets compared at equal budget: each paper's headline
comparison at CPU size. ``matchdetr bench convergence`` trains the union of every study's presets once, one
after another (a preset shared by two studies, SAM-DETR++-tiny, is trained once), then writes the combined
outputs and one folder per study. ``matchdetr bench docs`` runs that, the parameter/GFLOPs count and the speed
comparison with HF transformers, and writes each result into ``docs/benchmarks.md`` between its markers::

    <!-- bench:KEY -->
    ... generated, replaced on every run ...
    <!-- /bench:KEY -->

so every table in the document is the output of the command written beside it, never hand-copied.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..io.files import atomic_write_text
from .variants import VARIANTS, model_config  # noqa: F401  (re-exported: a study entry's config)

if TYPE_CHECKING:
    from .convergence import ModelRun
# (.convergence needs torch; this module does not at import, so the CLI parser can name the studies without it)


# The documented default budget of `matchdetr bench convergence`: every study's presets at batch 8 within 60
# minutes on a 2-core CPU (docs/benchmarks.md has the measured time).
DEFAULT_ITERS = 400
DEFAULT_EVAL_EVERY = 200


@dataclass(frozen=True)
class Study:
    title: str
    models: tuple[str, ...]
    note: str = ""
    default: bool = True  # part of the default `bench convergence` run (the one held to 60 minutes)


# The papers' four comparisons, in the order docs/benchmarks.md shows them.
STUDIES: dict[str, Study] = {
    "sam": Study("DETR vs SAM-DETR vs SAM-DETR++ (+ SMCA)",
                 ("detr-tiny", "sam-detr-tiny", "sam-detr-smca-tiny", "sam-detr-plus-plus-tiny"),
                 "SAM-DETR++ paper table 1: semantic-aligned matching over DETR, multi-scale on top"),
    "deformable": Study("Deformable-DETR vs Stable-Deformable-DETR",
                        ("deformable-detr-tiny", "stable-deformable-detr-tiny"),
                        "Stable-DINO paper table 5: stable matching on Deformable-DETR"),
    "dino": Study("DINO vs Stable-DINO", ("dino-tiny", "stable-dino-tiny"),
                  "Stable-DINO paper table 1 and fig. 3 (unstable score per decoder layer)"),
    "stable-sam": Study("SAM-DETR++ vs Stable-SAM-DETR++", ("sam-detr-plus-plus-tiny", "stable-sam-detr-plus-plus-tiny"),
                        "both papers in one model: stable matching on SAM-DETR++"),
    "deformable-family": Study("Deformable-DETR variants and DAB-Deformable-DETR",
                               ("deformable-detr-tiny", "deformable-detr-refine-tiny", "deformable-detr-two-stage-tiny",
                                "dab-deformable-detr-tiny"),
                               "every Deformable-DETR configuration at CPU size", default=False),
    "mask-dino": Study("Mask-DINO vs Stable-MaskDINO (instance segmentation)", ("maskdino-tiny", "stable-maskdino-tiny"),
                       "Stable-DINO paper table 4: stable matching on Mask-DINO, box and mask AP", default=False),
    "iou-aware": Study("The IoU-aware classification losses on DINO-tiny",
                       ("dino-tiny", "dino-tiny+psl", "dino-tiny+vfl", "dino-tiny+qfl", "dino-tiny+ia-bce",
                        "dino-tiny+mal", "dino-tiny+psl+pmc"),
                       "focal, PSL, VFL, QFL, IA-BCE and MAL on one detector, matcher, data, budget and "
                       "class weight; PSL + position-modulated cost is Stable-DINO's loss and cost without its "
                       "memory fusion", default=False),
}


def default_studies() -> list[str]:
    return [name for name, study in STUDIES.items() if study.default]


def study_models(names: list[str] | None = None) -> list[str]:
    """The presets of the named studies (the default ones when ``None``), each once, in study order."""
    chosen = default_studies() if names is None else names
    unknown = [n for n in chosen if n not in STUDIES]
    if unknown:
        raise ValueError(f"unknown study '{unknown[0]}'; available: {', '.join(STUDIES)}")
    return list(dict.fromkeys(m for n in chosen for m in STUDIES[n].models))


def write_study_outputs(runs: list[ModelRun], out: Path, names: list[str] | None = None) -> list[Path]:
    """``OUT/<study>/`` with the study's curves, table and unstable score, for every study whose presets all
    ran; returns the study folders written."""
    from .convergence import write_outputs

    by_preset = {r.preset: r for r in runs}
    written = []
    for name in names or list(STUDIES):
        study = STUDIES[name]
        if all(m in by_preset for m in study.models):
            write_outputs([by_preset[m] for m in study.models], out / name, title=study.title)
            written.append(out / name)
    return written


def convergence_markdown(runs: list[ModelRun], study: Study) -> str:
    """The study's table for the document: AP at every evaluation, the final COCO metrics, the unstable score
    per decoder layer and the wall time of each preset."""
    from .convergence import METRICS, found_named

    by_preset = {r.preset: r for r in runs}
    chosen = [by_preset[m] for m in study.models]
    iters = sorted({it for r in chosen for it, _ in r.curve})
    layers = sorted({layer for r in chosen for layer in r.unstable.get("layers", [])})
    masks = [k for k in ("segm_AP", "segm_AP50", "segm_AP75") if any(k in r.final for r in chosen)]  # mask models
    head = (["preset"] + [f"AP @{it}" for it in iters] + [f"{k} @{iters[-1]}" if k == "AP50" else k for k in METRICS[1:]]
            + [k.replace("segm_", "mask ") for k in masks]
            + [f"unstable l{layer}" for layer in layers] + ["found %", "named %", "minutes"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in chosen:
        curve = dict(r.curve)
        unstable = dict(zip(r.unstable.get("layers", []), r.unstable.get("scores", [])))
        cells = [f"`{r.preset}`"] + [_num(curve.get(it, {}).get("AP")) for it in iters]
        cells += [_num(r.final.get(k)) for k in (*METRICS[1:], *masks)]
        cells += [_num(unstable.get(layer), 1) for layer in layers]
        cells += found_named(r)
        lines.append("| " + " | ".join(cells + [f"{r.minutes:.1f}"]) + " |")
    return "\n".join(lines)


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def machine() -> str:
    """A one-line description of where the figures were measured."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):  # /proc/cpuinfo is Linux only
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu}, {torch.get_num_threads()} threads{gpu}, torch {torch.__version__}"


# ------------------------------------------------------------------------------------- the document
_MARKER = "<!-- bench:{key} -->"


def splice(text: str, key: str, content: str) -> str:
    """Replace what stands between ``<!-- bench:KEY -->`` and ``<!-- /bench:KEY -->`` with ``content``."""
    pattern = re.compile(rf"(<!-- bench:{re.escape(key)} -->\n).*?(<!-- /bench:{re.escape(key)} -->)", re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"the document has no '<!-- bench:{key} -->' ... '<!-- /bench:{key} -->' block to fill")
    return pattern.sub(lambda m: m.group(1) + content.rstrip("\n") + "\n" + m.group(2), text, count=1)


def update_document(doc: Path, blocks: dict[str, str]) -> None:
    """Write every ``{key: content}`` block into ``doc`` at once (nothing is written if one key is missing)."""
    text = doc.read_text(encoding="utf-8")
    for key, content in blocks.items():
        text = splice(text, key, content)
    atomic_write_text(doc, text)


def convergence_blocks(runs: list[ModelRun], out: Path, figures: Path, command: str, budget: str) -> dict[str, str]:
    """One block per study: the command, the table and the two figures (copied next to the document)."""
    blocks = {}
    figures.mkdir(parents=True, exist_ok=True)
    for folder in write_study_outputs(runs, out):
        name = folder.name
        for kind in ("curves", "unstable"):
            shutil.copyfile(folder / f"{kind}.png", figures / f"{name}_{kind}.png")
        rel = figures.name
        blocks[f"convergence-{name}"] = (
            f"`{command}` (study `{name}`: {STUDIES[name].note}). AP in percent; unstable score in percent of GTs "
            f"(lower is more stable).\n\n{convergence_markdown(runs, STUDIES[name])}\n\n"
            f"![{STUDIES[name].title}]({rel}/{name}_curves.png) ![unstable score]({rel}/{name}_unstable.png)")
    default = [r for r in runs if r.preset in set(study_models())]
    if len(default) < len(study_models()):  # a run of other studies only: the default study's line stays
        return blocks
    total = sum(r.minutes for r in default)
    blocks["convergence-time"] = (f"The default study ({', '.join(default_studies())}): {len(default)} presets, {budget} "
                                  f"each, {total:.1f} min of training, evaluation and scoring in all on {machine()} "
                                  f"(`{command}`; per preset in the tables below).")
    return blocks


def run_docs(parts: list[str], doc: Path, make: dict[str, Callable[[], dict[str, str]]]) -> list[str]:
    """Make the blocks of each part in ``parts`` (keys of ``make``) and write them into ``doc``; returns the keys
    written. Unknown parts fail before anything runs."""
    unknown = [p for p in parts if p not in make]
    if unknown:
        raise ValueError(f"unknown part '{unknown[0]}'; available: {', '.join(make)}")
    if not doc.exists():
        raise FileNotFoundError(f"document not found: {doc}")
    written: list[str] = []
    for part in parts:
        blocks = make[part]()
        update_document(doc, blocks)  # part by part: a later part that fails keeps the earlier results
        written += list(blocks)
    return written
