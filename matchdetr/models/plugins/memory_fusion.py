"""Memory fusion (Stable-DINO, Liu et al. 2023, sec 3, appendix B, table 6).

Backbone features and encoder outputs are fused before the decoder so that early training reads features
closer to the (pre-trained) backbone: concatenate along channels, ``Linear`` to the hidden size, LayerNorm. The
fused tokens replace the memory for everything downstream (query selection and decoder cross-attention).

- ``dense`` (Stable-DINO's default): ``[x0, x1, ..., xL]``, ``x0`` the encoder input (projected multi-scale
  backbone features without positional embedding), ``xk`` encoder layer k's output. At d = 256 and L = 6:
  ``Linear(7*256 -> 256)`` + LayerNorm = 459,520 parameters.
- ``simple``: ``[x0, xL]``.
- ``u_like``: not released, shown only as a figure (U-Net-like skips). Our interpretation: encoder layer k's
  input is ``Fuse(x_{k-1}, x_{L-k+1})`` (a mirror skip) for every k whose mirror output already exists
  (``L - k + 1 <= k - 1``, i.e. k > L/2 for even L; the same rule keeps odd L valid), and
  the final memory is ``Fuse(x_L, x_0)``.
Off when the model's ``memory_fusion`` is None.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...fields import Component
from ..encoders import Encoder
from ..memory import Memory

FUSIONS = ("simple", "u_like", "dense")


class Fuse(nn.Module):
    """``Linear(n * d -> d)`` + LayerNorm over channel-concatenated ``[B, S, d]`` tensors."""

    def __init__(self, num_inputs: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(num_inputs * dim, dim)
        self.norm = nn.LayerNorm(dim)
        # the release: Xavier weights and a zero bias, like every other Linear of the DINO transformer
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, xs: list[Tensor]) -> Tensor:
        return self.norm(self.proj(torch.cat(xs, -1)))


class MemoryFusion(nn.Module):
    """``dense`` / ``simple`` fusion: Memory (with ``layers = [x0, ..., xL]``) -> Memory with fused tokens.

    sources: indices into ``Memory.layers`` to concatenate (dense: all; simple: first and last).
    """

    def __init__(self, sources: list[int], dim: int) -> None:
        super().__init__()
        self.sources = list(sources)
        self.fuse = Fuse(len(self.sources), dim)

    def forward(self, memory: Memory) -> Memory:
        if not memory.layers:
            raise RuntimeError("memory fusion needs the encoder's per-layer outputs (Encoder.keep_layers=True)")
        out = memory.with_tokens(self.fuse([memory.layers[i] for i in self.sources]))
        out.layers = memory.layers
        return out


class ULikeEncoder(nn.Module):
    """An encoder stack with U-Net-like mirror skips (``u_like`` fusion, our interpretation; see module doc).

    Keeps the wrapped encoder's ``layers`` (so parameter names stay ``encoder.layers.<k>.*``) and adds
    ``skips.<k>`` for the fused layer inputs and ``final`` for ``Fuse(x_L, x_0)``.
    """

    def __init__(self, encoder: Encoder, dim: int) -> None:
        super().__init__()
        self.layers = encoder.layers
        n = len(self.layers)
        # layer k (1-based) takes a mirror skip when x_{n-k+1} already exists: n - k + 1 <= k - 1
        self.skip_of = {k: n - k + 1 for k in range(1, n + 1) if n - k + 1 <= k - 1}
        self.skips = nn.ModuleDict({str(k): Fuse(2, dim) for k in self.skip_of})
        self.final = Fuse(2, dim)

    def forward(self, memory: Memory) -> Memory:
        xs = [memory.tokens]
        for k, layer in enumerate(self.layers, start=1):
            x = xs[-1]
            if k in self.skip_of:
                x = self.skips[str(k)]([x, xs[self.skip_of[k]]])
            xs.append(layer(x, memory))
        out = memory.with_tokens(self.final([xs[-1], xs[0]]))
        out.layers = xs
        return out


def add_memory_fusion(detector: nn.Module, kind: str, dim: int) -> None:
    """Plug memory fusion ``kind`` into a built detector in place (works for every architecture: it only
    needs an :class:`Encoder` and the detector's ``fusion`` slot)."""
    if kind not in FUSIONS:
        raise ValueError(f"unknown memory fusion '{kind}'; available: {', '.join(FUSIONS)}")
    encoder = detector.encoder
    if not isinstance(encoder, Encoder):
        raise ValueError(f"model.memory_fusion={kind} needs a layer-stack encoder, got {type(encoder).__name__}")
    n = len(encoder.layers)
    if kind == "u_like":
        detector.encoder = ULikeEncoder(encoder, dim)
        return
    encoder.keep_layers = True
    fusion = MemoryFusion(list(range(n + 1)) if kind == "dense" else [0, n], dim)
    # a composition with its own fusion step (Mask-DINO's pixel embedding) reads the fused memory
    detector.fusion = fusion if isinstance(detector.fusion, nn.Identity) else nn.Sequential(fusion, detector.fusion)


class _FusionConfig(Component):
    def apply(self, detector: nn.Module, dim: int) -> None:
        """Plug this fusion into a built detector in place."""
        add_memory_fusion(detector, self.kind, dim)


@dataclass
class DenseFusionConfig(_FusionConfig):
    """Stable-DINO's default: the backbone features and every encoder layer's output, fused."""

    kind = "dense"


@dataclass
class SimpleFusionConfig(_FusionConfig):
    """The backbone features and the last encoder layer's output, fused."""

    kind = "simple"


@dataclass
class ULikeFusionConfig(_FusionConfig):
    """U-Net-like mirror skips between encoder layers (our reading of the paper's figure)."""

    kind = "u_like"
