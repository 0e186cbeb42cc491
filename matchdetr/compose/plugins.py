"""Plug-ins that several compositions add the same way."""

from __future__ import annotations

from torch import nn

from .model_config import ModelConfig


def with_denoising(queries: nn.Module, cfg: ModelConfig) -> nn.Module:
    """Wrap a query initialiser with the denoising plug-in ``model.denoising`` names (None: unchanged)."""
    if cfg.denoising is None:
        return queries
    return cfg.denoising.build(queries, cfg.num_classes, cfg.transformer.hidden_dim)
