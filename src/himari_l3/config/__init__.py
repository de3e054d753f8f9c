"""Typed configuration tree and its loader."""

from .schema import (
    CircuitBreakerConfig,
    Layer3Config,
    PortfolioConfig,
    RLConfig,
    SizingConfig,
    parse_config,
)

__all__ = [
    "CircuitBreakerConfig",
    "Layer3Config",
    "PortfolioConfig",
    "RLConfig",
    "SizingConfig",
    "parse_config",
]
