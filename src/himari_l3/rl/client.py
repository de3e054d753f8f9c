"""The HTTP RL client of the user's document: `TransformerRLClient`, the guarded HTTP
transport.

Everything about the wire is in ``wire.py`` (the contract) and ``http.py`` (the transport);
everything about the breaker, deadlines, statistics, the confidence floor and replay is in
``rl_guard.py``. This module only puts the two together under the name the user's document
uses, and re-exports the names earlier versions exported from here.
"""

from __future__ import annotations

import httpx

from .._clock import Clock
from ..resilience import CircuitBreaker
from ..rl_guard import (
    DEFAULT_WARMUP_TIMEOUT_SEC,
    GuardedModel,
    PredictionStats,
    check_market_data,
)
from ..rl_port import FAILURE_REASONS, RLFailure, RLModel, RLResult, gather_with_deadline
from .http import DEFAULT_MAX_RESPONSE_BYTES, HttpModel, encode_request, parse_prediction

__all__ = [
    "FAILURE_REASONS",
    "GuardedModel",
    "PredictionStats",
    "RLFailure",
    "RLModel",
    "RLResult",
    "TransformerRLClient",
    "check_market_data",
    "encode_request",
    "gather_with_deadline",
    "parse_prediction",
]


class TransformerRLClient(GuardedModel):
    """Asks a remote RL model for a position per signal, failing fast when it is unhealthy.

    Parameters
    ----------
    endpoint_url : full URL of the model's predict route (``http://host:port/predict``).
    timeout_sec : hard per-request deadline; an answer later than this (on ``clock``) is "slow".
    min_confidence : predictions below it come back as ``RLFailure("low_confidence")`` (not a
        breaker failure: the model answered correctly, it is just unsure).
    circuit_breaker : shared breaker; a default one is created if None.
    clock : time source for latency (default the system clock).
    transport : an ``httpx.AsyncBaseTransport`` (tests use ``httpx.MockTransport``).
    max_connections : size of the connection pool.
    max_response_bytes : a longer response body is the failure ``oversize`` (not read further;
        a batch answer may be this long per signal it carries).
    warmup_timeout_sec : at most how long construction waits for the transport's warm-up
        (clients made, connections opened, the batch advertisement read).

    Arguments after ``min_confidence`` are keyword-only.
    """

    def __init__(  # noqa: PLR0913 - the document's three, then keyword-only transport options
        self,
        endpoint_url: str,
        timeout_sec: float = 0.15,
        min_confidence: float = 0.0,
        *,
        circuit_breaker: CircuitBreaker | None = None,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 20,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        warmup_timeout_sec: float = DEFAULT_WARMUP_TIMEOUT_SEC,
    ) -> None:
        self.http = HttpModel(endpoint_url, clock=clock, transport=transport,
                              max_connections=max_connections,
                              max_response_bytes=max_response_bytes)
        super().__init__(self.http, circuit_breaker, timeout_sec=timeout_sec,
                         min_confidence=min_confidence, clock=clock,
                         warmup_timeout_sec=warmup_timeout_sec)

    @property
    def http_client(self) -> httpx.AsyncClient | None:
        """The first pooled client (made at start; None again after `close`)."""
        return self.http.http_client
