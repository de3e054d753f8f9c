"""HIMARI OPUS V2 Layer 3: position sizing and execution."""

from ._clock import Clock, ManualClock, SystemClock
from ._exceptions import (
    CircuitBreakerOpenException,
    ConfigError,
    InvalidCascadeIndicatorsException,
    InvalidOutcomeException,
    InvalidPriceException,
    InvalidRLPredictionException,
    InvalidSignalException,
    Layer3Error,
    StateRestoreError,
    ValidationError,
)
from .contracts import (
    CascadeIndicators,
    CascadeRecommendation,
    EnsembleAllocation,
    MarketRegime,
    PositionSizingDecision,
    RLPrediction,
    TacticalAction,
    TacticalSignal,
    ValidationStatus,
)

__version__ = "0.1.0"

__all__ = [
    "CascadeIndicators",
    "CascadeRecommendation",
    "CircuitBreakerOpenException",
    "Clock",
    "ConfigError",
    "EnsembleAllocation",
    "InvalidCascadeIndicatorsException",
    "InvalidOutcomeException",
    "InvalidPriceException",
    "InvalidRLPredictionException",
    "InvalidSignalException",
    "Layer3Error",
    "ManualClock",
    "MarketRegime",
    "PositionSizingDecision",
    "RLPrediction",
    "StateRestoreError",
    "SystemClock",
    "TacticalAction",
    "TacticalSignal",
    "ValidationError",
    "ValidationStatus",
    "__version__",
]
