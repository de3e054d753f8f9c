"""Resilience around Layer 3's optional dependencies (the RL endpoint)."""

from .circuit_breaker import CircuitBreaker
from .events import CircuitEvent, CircuitState, failure_reason

__all__ = ["CircuitBreaker", "CircuitEvent", "CircuitState", "failure_reason"]
