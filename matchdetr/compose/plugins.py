"""Plug-ins that several compositions add the same way."""

from __future__ import annotations

from dataclasses import asdict

from torch import nn

from ..config import ModelConfig
from ..models.plugins.denoising import DenoisingQueries, DenoisingSpec


def with_denoising(queries: nn.Module, cfg: ModelConfig) -> nn.Module:
    """Wrap a query initialiser with the denoising plug-in when ``model.denoising.style`` asks for it."""
    if cfg.denoising.style == "none":
        return queries
    return DenoisingQueries(queries, cfg.num_classes, cfg.transformer.hidden_dim, DenoisingSpec(**asdict(cfg.denoising)))
