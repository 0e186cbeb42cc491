"""Small building blocks shared by encoders, decoders and heads."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them (DETR's box head: 3 layers)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:] + [out_dim]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class FeedForward(nn.Module):
    """Transformer FFN block with its residual and norm: ``norm(x + drop(W2 drop(act(W1 x))))`` (post-norm),
    or ``x + drop(W2 drop(act(W1 norm(x))))`` (pre-norm)."""

    def __init__(self, dim: int, hidden: int, dropout: float, pre_norm: bool = False) -> None:
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)
        self.pre_norm = pre_norm

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(x) if self.pre_norm else x
        y = self.linear2(self.dropout1(F.relu(self.linear1(y))))
        x = x + self.dropout2(y)
        return x if self.pre_norm else self.norm(x)


def clones(module: nn.Module, n: int) -> nn.ModuleList:
    """``n`` independent deep copies (separately initialised parameters are not needed: DETR copies too)."""
    return nn.ModuleList(copy.deepcopy(module) for _ in range(n))


def with_pos(x: Tensor, pos: Tensor | None) -> Tensor:
    return x if pos is None else x + pos


def run_layer(layer: nn.Module, checkpoint: bool, *args: Any) -> Any:
    """``layer(*args)``, recomputed in the backward pass instead of keeping its activations when ``checkpoint``
    is set and autograd is recording (activation checkpointing, Chen et al. 2016: memory for time).

    Non-reentrant checkpointing with the RNG state preserved, so dropout draws the same masks again and the
    gradients equal those of the plain call."""
    if checkpoint and torch.is_grad_enabled() and layer.training:
        return torch.utils.checkpoint.checkpoint(layer, *args, use_reentrant=False)
    return layer(*args)


def set_activation_checkpointing(model: nn.Module, on: bool = True) -> int:
    """Switch activation checkpointing of every encoder and decoder layer stack in ``model`` (each module with
    a ``checkpoint_layers`` attribute); returns how many stacks were switched (``train.checkpoint_activations``)."""
    stacks = [m for m in model.modules() if hasattr(m, "checkpoint_layers")]
    for m in stacks:
        m.checkpoint_layers = on
    return len(stacks)
