"""SAM-DETR++'s coarse-to-fine multi-scale fusion (sec 4.3) as a per-layer memory view of the shared decoder.

The multi-scale encoder fuses every level; the decoder then reads ONE level per layer, coarsest first, in equal
runs: with 6 layers over (C3, C4, C5) the layers read C5, C5, C4, C4, C3, C3. So the first layers match queries
to large, semantic objects and the last refine them on fine detail. The decoder asks this plug-in for the memory
each layer reads; without it every layer reads the whole memory.
"""

from __future__ import annotations

from torch import nn

from ..memory import Memory


def coarse_to_fine(num_layers: int, num_levels: int) -> list[int]:
    """Memory level read by each layer, coarsest first in equal runs (sec 4.3): 6 layers over levels
    (C3, C4, C5) = (0, 1, 2) -> [2, 2, 1, 1, 0, 0]; a single level -> all 0."""
    return [num_levels - 1 - (i * num_levels) // num_layers for i in range(num_layers)]


class CoarseToFine(nn.Module):
    """``(memory) -> [Memory per layer]``: layer ``i`` reads the single level ``levels[i]``
    (:meth:`Memory.select_level`: slices, no copies; layers reading the same level share one view)."""

    def __init__(self, levels: list[int]) -> None:
        super().__init__()
        self.levels = list(levels)

    def forward(self, memory: Memory) -> list[Memory]:
        if max(self.levels) >= len(memory.shapes):
            raise ValueError(f"the decoder reads level {max(self.levels)} but the memory has {len(memory.shapes)}")
        views = {lvl: memory.select_level(lvl) for lvl in sorted(set(self.levels))}
        return [views[lvl] for lvl in self.levels]
