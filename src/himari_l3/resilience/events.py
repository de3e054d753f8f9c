"""The circuit breaker's vocabulary: its states and the events it emits to listeners."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["CircuitEvent", "CircuitState", "Listener", "failure_reason"]


class CircuitState(enum.StrEnum):
    """Breaker state; ``code`` is the number the ``*_circuit_breaker_state`` gauge shows."""

    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"

    @property
    def code(self) -> int:
        """0 closed, 1 half-open, 2 open."""
        return _STATE_CODE[self]


_STATE_CODE = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}


@dataclass(frozen=True, slots=True)
class CircuitEvent:
    """Something the breaker did or saw, as delivered to listeners.

    ``kind`` is one of "state_change", "failure", "success", "fallback", "rejected", or
    "init" (the current state, announced to a new listener); ``timestamp`` is the breaker
    clock's monotonic time in seconds; ``reason`` says why (the failure reason, or what
    caused a state change); ``timeout_sec`` and ``success_rate`` are the breaker's current
    open timeout and share of attempted calls that succeeded, as of the event.
    """

    name: str
    kind: str
    old_state: CircuitState
    new_state: CircuitState
    timestamp: float
    reason: str = ""
    count: int = 1  # how many calls a "rejected" event stands for (a batch fast path)
    timeout_sec: float = 0.0
    success_rate: float = 1.0


Listener = Callable[[CircuitEvent], None]


def failure_reason(exc: BaseException) -> str:
    """Map an exception from a guarded call onto a bounded reason code.

    A cancelled call is a ``timeout``: a guarded call is cancelled when its caller stops
    waiting for it, which is how every asyncio deadline (``asyncio.timeout``, ``wait_for``)
    ends it — and the call cannot tell a deadline from another cancellation (both are a
    bare ``task.cancel()``). Either way the dependency did not answer in the time it had.
    """
    if isinstance(exc, TimeoutError | asyncio.CancelledError):
        return "timeout"
    if isinstance(exc, ConnectionError):
        return "connection_error"
    if isinstance(exc, Exception):
        return "error"
    return "cancelled"  # KeyboardInterrupt, SystemExit: the probe slot must still be freed
