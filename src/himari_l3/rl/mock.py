"""A seeded stand-in for the RL model: a transport (`MockModel`) and the guarded client the
user's document names (`MockTransformerRLClient`).

It needs no network, so "mock RL" mode runs anywhere; its failures go through the same guard
and a real `CircuitBreaker`, so the fallback and breaker paths are exercised exactly as in
production.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Sequence
from typing import Any

from .._clock import SYSTEM_CLOCK, Clock
from ..contracts import RLPrediction, TacticalSignal
from ..resilience import CircuitBreaker
from ..rl_guard import GuardedModel
from ..rl_port import RLFailure, RLResult

__all__ = ["MOCK_MODEL_VERSION", "MockModel", "MockTransformerRLClient"]

MOCK_MODEL_VERSION = "mock-1"


class MockModel:
    """Answers like an RL model would, failing with probability ``1 - success_rate``.

    A success is derived from the signal: ``position_pct = direction · 0.1 · c`` with
    ``c = confidence · (0.8 + 0.2·u)``, ``u ~ U[0, 1)`` (so ``|position_pct| <= 0.1``, HOLD → 0);
    ``predicted_return = direction · expected_return`` (``0.01·c`` when absent);
    ``predicted_volatility`` is the signal's (0.02 when absent). A failure is "http_error" or
    "timeout" with equal odds; an answer slower than the deadline is a "timeout".

    Every call draws exactly three numbers from one ``random.Random(seed)``, in the order of
    the signals, so a seeded mock gives the same sequence of answers whichever API (sync or
    async) is used. The latency is simulated, not spent: an answer slower than the deadline
    is a "timeout" by arithmetic, so the answers never depend on how busy the machine is (the
    async API only yields to the event loop once per call).
    """

    endpoint = "mock://rl"

    def __init__(self, success_rate: float = 0.9, seed: int | None = None,
                 latency_ms: float = 1.0, clock: Clock | None = None) -> None:
        if not 0.0 <= success_rate <= 1.0:
            raise ValueError(f"success_rate was {success_rate!r}, expected 0 <= x <= 1")
        if not 0.0 <= latency_ms <= 1e6:
            raise ValueError(f"latency_ms was {latency_ms!r}, expected 0 <= x <= 1e6")
        self.success_rate = float(success_rate)
        self.seed = seed
        self.latency_ms = float(latency_ms)
        self._clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()

    def _draw(self) -> tuple[bool, float, str]:
        with self._rng_lock:
            ok = self._rng.random() < self.success_rate
            jitter = self._rng.random()
            reason = "timeout" if self._rng.random() < 0.5 else "http_error"
        return ok, jitter, reason

    def _answer(self, signal: TacticalSignal, draw: tuple[bool, float, str],
                deadline_sec: float) -> RLResult:
        ok, jitter, reason = draw
        if ok and self.latency_ms / 1000.0 > deadline_sec:
            ok, reason = False, "timeout"
        if not ok:
            return RLFailure(signal.symbol, signal.strategy_id, reason, "simulated failure")
        direction = signal.action.direction
        conf = min(max(signal.confidence * (0.8 + 0.2 * jitter), 0.0), 1.0)
        edge = signal.expected_return if signal.expected_return is not None else 0.01 * conf
        return RLPrediction(
            optimal_position_pct=direction * 0.1 * conf,
            confidence=conf,
            predicted_return=min(max(direction * edge, -1.0), 1.0),
            predicted_volatility=signal.predicted_volatility or 0.02,
            model_version=MOCK_MODEL_VERSION,
            latency_ms=self.latency_ms,
            timestamp_ns=self._clock.time_ns(),
        )

    async def predict_many(self, signals: Sequence[TacticalSignal],
                           market_data: dict[str, Any] | None,
                           deadline_sec: float) -> list[RLResult]:
        # A real coroutine that yields once, but no wall-clock wait and no wall-clock
        # deadline: the simulated latency decides timeouts (class docstring).
        await asyncio.sleep(0)
        return self.predict_many_blocking(signals, market_data, deadline_sec)

    def predict_many_blocking(self, signals: Sequence[TacticalSignal],
                              market_data: dict[str, Any] | None,
                              deadline_sec: float) -> list[RLResult]:
        draws = [self._draw() for _ in signals]
        return [self._answer(s, d, deadline_sec) for s, d in zip(signals, draws, strict=True)]

    def warm_up(self, timeout_sec: float) -> None:
        """Nothing to open."""

    def close(self) -> None:
        """Nothing to release."""


class MockTransformerRLClient(GuardedModel):
    """The guarded mock client of the user's document (same interface as
    `TransformerRLClient`).

    Parameters
    ----------
    success_rate : probability in [0, 1] that an admitted call succeeds.
    seed : seed of the generator (None: nondeterministic).
    latency_ms : simulated latency (reported, and compared with the deadline; never slept).
    circuit_breaker, min_confidence, clock : keyword-only, as for `GuardedModel`.
    timeout_sec : keyword-only per-request timeout (None: only deadlines bound a call).
    """

    def __init__(
        self,
        success_rate: float = 0.9,
        seed: int | None = None,
        latency_ms: float = 1.0,
        *,
        circuit_breaker: CircuitBreaker | None = None,
        min_confidence: float = 0.0,
        clock: Clock | None = None,
        timeout_sec: float | None = None,
    ) -> None:
        mock = MockModel(success_rate, seed, latency_ms, clock)
        super().__init__(mock, circuit_breaker, timeout_sec=timeout_sec,
                         min_confidence=min_confidence, clock=clock)
        self.mock = mock

    @property
    def success_rate(self) -> float:
        return self.mock.success_rate

    @success_rate.setter
    def success_rate(self, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"success_rate was {value!r}, expected 0 <= x <= 1")
        self.mock.success_rate = float(value)

    @property
    def seed(self) -> int | None:
        return self.mock.seed

    @property
    def latency_ms(self) -> float:
        return self.mock.latency_ms

