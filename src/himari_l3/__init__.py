"""HIMARI OPUS V2 Layer 3: position sizing and execution."""

from . import bootstrap  # noqa: F401 - the composition root wires the default adapters
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
from ._version import __version__
from .config.schema import Layer3Config
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
from .observability.metrics import Layer3Metrics
from .observability.prometheus import PrometheusObserver
from .observers import Observer
from .phase1 import Layer3Phase1
from .phase2 import Layer3Phase2Portfolio
from .phase3 import Layer3Phase3Hybrid
from .resilience import CircuitBreaker, CircuitEvent, CircuitState
from .rl.client import RLFailure, TransformerRLClient
from .rl.mock import MockTransformerRLClient

__all__ = [
    "CascadeIndicators",
    "CascadeRecommendation",
    "CircuitBreaker",
    "CircuitBreakerOpenException",
    "CircuitEvent",
    "CircuitState",
    "Clock",
    "ConfigError",
    "EnsembleAllocation",
    "InvalidCascadeIndicatorsException",
    "InvalidOutcomeException",
    "InvalidPriceException",
    "InvalidRLPredictionException",
    "InvalidSignalException",
    "Layer3Config",
    "Layer3Error",
    "Layer3Metrics",
    "Layer3Phase1",
    "Layer3Phase2Portfolio",
    "Layer3Phase3Hybrid",
    "ManualClock",
    "MarketRegime",
    "MockTransformerRLClient",
    "Observer",
    "PositionSizingDecision",
    "PrometheusObserver",
    "RLFailure",
    "RLPrediction",
    "StateRestoreError",
    "SystemClock",
    "TacticalAction",
    "TacticalSignal",
    "TransformerRLClient",
    "ValidationError",
    "ValidationStatus",
    "__version__",
]
