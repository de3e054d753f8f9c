"""A seeded stand-in for the RL model with the same interface as `TransformerRLClient`.

It needs no network, so "mock RL" mode runs anywhere; its failures go through a real
`CircuitBreaker`, so the fallback and breaker paths are exercised exactly as in production.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Sequence
from typing import Any

from .._clock import SYSTEM_CLOCK, Clock
from .._exceptions import CircuitBreakerOpenException
from ..contracts import RLPrediction, TacticalSignal
from ..resilience import CircuitBreaker
from .client import (
    ClientStatsMixin,
    PredictionStats,
    RLFailure,
    RLResult,
    encode_request,
    gather_with_deadline,
)

__all__ = ["MockTransformerRLClient"]

MOCK_MODEL_VERSION = "mock-1"


class MockTransformerRLClient(ClientStatsMixin):
    """Answers like an RL model would, failing with probability ``1 - success_rate``.

    A success is derived from the signal: ``position_pct = direction · 0.1 · c`` with
    ``c = confidence · (0.8 + 0.2·u)``, ``u ~ U[0, 1)`` (so ``|position_pct| <= 0.1``, HOLD → 0);
    ``predicted_return = direction · expected_return`` (``0.01·c`` when absent);
    ``predicted_volatility`` is the signal's (0.02 when absent). A failure is "http_error" or
    "timeout" with equal odds, recorded in the breaker.

    Every admitted call draws exactly three numbers from one ``random.Random(seed)``, so a
    seeded mock gives the same sequence of answers whichever API (sync or async) is used.

    Parameters
    ----------
    success_rate : probability in [0, 1] that an admitted call succeeds.
    seed : seed of the generator (None: nondeterministic).
    latency_ms : simulated latency (the async API sleeps it; the sync API only reports it).
    circuit_breaker, min_confidence, clock : as for `TransformerRLClient` (keyword-only).
    """

    endpoint_url = "mock://rl"

    def __init__(
        self,
        success_rate: float = 0.9,
        seed: int | None = None,
        latency_ms: float = 1.0,
        *,
        circuit_breaker: CircuitBreaker | None = None,
        min_confidence: float = 0.0,
        clock: Clock | None = None,
    ) -> None:
        if not 0.0 <= success_rate <= 1.0:
            raise ValueError(f"success_rate was {success_rate!r}, expected 0 <= x <= 1")
        if not 0.0 <= latency_ms <= 1e6:
            raise ValueError(f"latency_ms was {latency_ms!r}, expected 0 <= x <= 1e6")
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence was {min_confidence!r}, expected 0 <= x <= 1")
        self.success_rate = float(success_rate)
        self.seed = seed
        self.latency_ms = float(latency_ms)
        self.min_confidence = float(min_confidence)
        self._clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self.circuit_breaker = circuit_breaker if circuit_breaker is not None else (
            CircuitBreaker("rl", clock=self._clock))
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._stats = PredictionStats()

    # -- one call, split around the simulated latency --------------------------------------

    def _admit(self, signal: TacticalSignal, deadline_sec: float | None) -> RLFailure | None:
        if deadline_sec is not None and deadline_sec <= 0.0:
            # No budget left: not the model's fault, so the breaker is not involved.
            return RLFailure(signal.symbol, signal.strategy_id, "timeout", "no time budget left")
        try:
            self.circuit_breaker.before_call()
        except CircuitBreakerOpenException as exc:
            return RLFailure(signal.symbol, signal.strategy_id, "circuit_open", str(exc))
        return None

    def _draw(self) -> tuple[bool, float, str]:
        with self._rng_lock:
            ok = self._rng.random() < self.success_rate
            jitter = self._rng.random()
            reason = "timeout" if self._rng.random() < 0.5 else "http_error"
        return ok, jitter, reason

    def _finish(self, signal: TacticalSignal, ok: bool, jitter: float, reason: str,
                deadline_sec: float | None) -> RLResult:
        breaker = self.circuit_breaker
        latency_sec = self.latency_ms / 1000.0
        if ok and deadline_sec is not None and latency_sec > deadline_sec:
            ok, reason = False, "timeout"
        if ok and breaker.call_deadline_sec is not None and latency_sec > breaker.call_deadline_sec:
            ok, reason = False, "slow"
        if not ok:
            breaker.record_failure(reason)
            return RLFailure(signal.symbol, signal.strategy_id, reason, "simulated failure")
        breaker.record_success(latency_sec)
        prediction = self._prediction(signal, jitter)
        if prediction.confidence < self.min_confidence:
            return RLFailure(signal.symbol, signal.strategy_id, "low_confidence",
                             f"confidence {prediction.confidence:g} < {self.min_confidence:g}")
        return prediction

    def _prediction(self, signal: TacticalSignal, jitter: float) -> RLPrediction:
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

    async def _predict_one(self, signal: TacticalSignal, deadline_sec: float | None) -> RLResult:
        rejected = self._admit(signal, deadline_sec)
        if rejected is not None:
            return rejected
        ok, jitter, reason = self._draw()
        try:
            if self.latency_ms > 0:
                await asyncio.sleep(self.latency_ms / 1000.0)
        except asyncio.CancelledError:
            self.circuit_breaker.record_failure("timeout")  # frees a HALF_OPEN probe slot
            raise
        return self._finish(signal, ok, jitter, reason, deadline_sec)

    # -- public interface (mirrors TransformerRLClient) ------------------------------------

    async def predict(
        self,
        signal: TacticalSignal,
        market_data: dict[str, Any] | None = None,
        *,
        deadline_sec: float | None = None,
    ) -> RLResult:
        """One simulated prediction, or an `RLFailure` saying why not."""
        encode_request(signal, market_data)  # same input validation as the HTTP client
        try:
            result = await self._predict_one(signal, deadline_sec)
        except asyncio.CancelledError:
            self._stats.record(RLFailure(signal.symbol, signal.strategy_id, "timeout",
                                         "cancelled"))
            raise
        self._stats.record(result)
        return result

    async def predict_many(
        self,
        signals: Sequence[TacticalSignal],
        market_data: dict[str, Any] | None = None,
        total_deadline_sec: float = 0.15,
    ) -> list[RLResult]:
        """Simulated predictions in parallel, in input order, within one total deadline."""
        for signal in signals:
            encode_request(signal, market_data)
        coros = [self._predict_one(s, total_deadline_sec) for s in signals]
        results = await gather_with_deadline(signals, coros, total_deadline_sec)
        for result in results:
            self._stats.record(result)
        return results

    def predict_sync(
        self,
        signal: TacticalSignal,
        market_data: dict[str, Any] | None = None,
        *,
        deadline_sec: float | None = None,
    ) -> RLResult:
        """Blocking `predict` (no sleep, no event loop: works anywhere)."""
        encode_request(signal, market_data)
        rejected = self._admit(signal, deadline_sec)
        result = rejected if rejected is not None else self._finish(signal, *self._draw(),
                                                                     deadline_sec)
        self._stats.record(result)
        return result

    def predict_many_sync(
        self,
        signals: Sequence[TacticalSignal],
        market_data: dict[str, Any] | None = None,
        total_deadline_sec: float = 0.15,
    ) -> list[RLResult]:
        """Blocking `predict_many` with the async twin's semantics: every call is admitted
        (and draws) first, then all finish — as when they run in parallel — so a breaker
        opening mid-batch affects sync and async alike."""
        for signal in signals:
            encode_request(signal, market_data)
        staged = [self._admit(s, total_deadline_sec) or self._draw() for s in signals]
        results = [st if isinstance(st, RLFailure) else self._finish(s, *st, total_deadline_sec)
                   for s, st in zip(signals, staged, strict=True)]
        for result in results:
            self._stats.record(result)
        return results

    def close(self) -> None:
        """Nothing to release (kept for interface parity with the HTTP client)."""

    async def aclose(self) -> None:
        """Nothing to release (kept for interface parity with the HTTP client)."""
