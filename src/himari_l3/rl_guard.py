"""One guard around any RL model transport: breaker, deadline, statistics, confidence floor,
and the replay tape — written once.

For every batch the guard

1. serves recorded answers instead of asking the model when a replay tape is loaded
   (restoring a service replays the journal; a remote model cannot be asked again);
2. gives up at once when there is no time budget left (not the model's fault: the breaker
   is not told) or when the breaker is open (one rejection event for the batch);
3. admits each call through the breaker (so a due HALF_OPEN probe is taken exactly once);
4. asks the transport for the admitted calls, within ``min(timeout_sec, deadline)``;
5. judges each answer: a transport failure is a breaker failure with its reason; an answer
   slower than the breaker's call deadline is a ``slow`` failure; a good one is a success,
   then a ``low_confidence`` fallback if under ``min_confidence`` (the model answered
   correctly, it is just unsure: not a breaker failure);
6. counts every outcome (``get_state``) and records what it returned on the tape, if any.

A cancelled batch (its caller gave up) reports every admitted call as a ``timeout`` failure,
so a HALF_OPEN probe slot is never left taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ._clock import SYSTEM_CLOCK, Clock
from ._exceptions import CircuitBreakerOpenException, StateRestoreError, ValidationError
from .contracts import RLPrediction, TacticalSignal
from .resilience import CircuitBreaker
from .rl_port import RLFailure, RLModel, RLResult

if TYPE_CHECKING:
    from .config.schema import Layer3Config

__all__ = [
    "DEFAULT_WARMUP_TIMEOUT_SEC",
    "ClientFactory",
    "GuardedModel",
    "PredictionStats",
    "RLTape",
    "check_market_data",
    "default_rl_client",
    "install_client_factory",
]


# How long building a guard may wait for its transport's warm-up (config: rl.warmup_timeout_sec).
DEFAULT_WARMUP_TIMEOUT_SEC = 1.0

_OPEN_BREAKER: list[RLResult] = []  # identity marks "no answers recorded" on replay


class PredictionStats:
    """Thread-safe counters behind ``GuardedModel.get_state``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = self._ok = 0
        self._by_reason: dict[str, int] = {}
        self._latency_sum_ms = 0.0

    def record_all(self, results: Sequence[RLResult]) -> None:
        """Count outcomes (latency is averaged over successful predictions)."""
        with self._lock:
            for result in results:
                self._total += 1
                if isinstance(result, RLPrediction):
                    self._ok += 1
                    self._latency_sum_ms += result.latency_ms
                else:
                    self._by_reason[result.reason] = self._by_reason.get(result.reason, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """The counters as a JSON-ready dict."""
        with self._lock:
            return {
                "total_predictions": self._total,
                "successful_predictions": self._ok,
                "failed_predictions": self._total - self._ok,
                "success_rate": self._ok / self._total if self._total else 1.0,
                "failures_by_reason": dict(sorted(self._by_reason.items())),
                "mean_latency_ms": self._latency_sum_ms / self._ok if self._ok else 0.0,
            }


class RLTape:
    """What a guard returned, batch by batch, while recording (journaled with a decision)."""

    def __init__(self) -> None:
        self.batches: list[list[RLResult]] = []

    @property
    def results(self) -> list[RLResult]:
        """Every recorded answer, in order."""
        return [r for batch in self.batches for r in batch]


def check_market_data(market_data: dict[str, Any] | None) -> None:
    """A caller input error (``market_data`` that is not strict JSON) raises
    `ValidationError` before the breaker or the model is involved."""
    if market_data is None:
        return
    try:
        json.dumps(market_data, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValidationError("market_data", market_data,
                              f"a JSON object of finite values ({err})") from None


class GuardedModel:
    """Guards one `RLModel` (see the module docstring).

    Parameters
    ----------
    model : the transport.
    circuit_breaker : shared breaker (a default one on ``clock`` if None).
    timeout_sec : per-request timeout (None: only the caller's deadlines bound a call).
    min_confidence : predictions below it come back as ``RLFailure("low_confidence")``.
    clock : time source of the default breaker.
    warmup_timeout_sec : the transport is warmed up here, at start (``model.warm_up``:
        connections opened, capabilities learnt), for at most about this long, so the
        first decision costs what a later one does.
    """

    def __init__(self, model: RLModel, circuit_breaker: CircuitBreaker | None = None, *,
                 timeout_sec: float | None = None, min_confidence: float = 0.0,
                 clock: Clock | None = None,
                 warmup_timeout_sec: float = DEFAULT_WARMUP_TIMEOUT_SEC) -> None:
        if timeout_sec is not None and not (math.isfinite(timeout_sec) and timeout_sec > 0):
            raise ValueError(f"timeout_sec was {timeout_sec!r}, expected a finite number > 0")
        if not (math.isfinite(warmup_timeout_sec) and 0 < warmup_timeout_sec <= 60):
            raise ValueError(f"warmup_timeout_sec was {warmup_timeout_sec!r}, expected "
                             "0 < x <= 60")
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence was {min_confidence!r}, expected 0 <= x <= 1")
        self.model = model
        self.timeout_sec = None if timeout_sec is None else float(timeout_sec)
        self.min_confidence = float(min_confidence)
        self.circuit_breaker = circuit_breaker if circuit_breaker is not None else (
            CircuitBreaker("rl", call_deadline_sec=self.timeout_sec,
                           clock=clock if clock is not None else SYSTEM_CLOCK))
        self._stats = PredictionStats()
        self._tape: RLTape | None = None
        self._replay: list[RLResult] | None = None
        model.warm_up(warmup_timeout_sec)

    @property
    def endpoint_url(self) -> str:
        return self.model.endpoint

    # -- record and replay -----------------------------------------------------------------

    @contextlib.contextmanager
    def recording(self) -> Iterator[RLTape]:
        """Record every answer returned inside the block (the service journals them)."""
        tape, self._tape = RLTape(), None
        self._tape = tape
        try:
            yield tape
        finally:
            self._tape = None

    @contextlib.contextmanager
    def replaying(self, results: Sequence[RLResult] | None) -> Iterator[None]:
        """Inside the block, batches get ``results`` without asking the model. ``None``
        (a journal row from before every answer was recorded) stands for a batch that met an
        open breaker: each ask is answered ``circuit_open``."""
        self._replay = _OPEN_BREAKER if results is None else list(results)
        try:
            yield
        finally:
            self._replay = None

    def _replayed(self, signals: Sequence[TacticalSignal]) -> list[RLResult]:
        out, self._replay = self._replay, []
        assert out is not None
        if out is _OPEN_BREAKER:
            return [RLFailure(s.symbol, s.strategy_id, "circuit_open",
                              "replayed: no answers were recorded") for s in signals]
        if len(out) != len(signals):
            raise StateRestoreError(f"replay had {len(out)} recorded RL answers for a batch "
                                    f"of {len(signals)} asks: the journal and the engine "
                                    "disagree")
        return out

    # -- one batch -------------------------------------------------------------------------

    def _admit(self, signals: Sequence[TacticalSignal], deadline_sec: float,
               ) -> tuple[list[RLResult | None], list[int]] | list[RLResult]:
        """Steps 2-3: either the whole batch's answers (no budget, breaker open) or the
        per-signal slots with the indices admitted to the model."""
        if deadline_sec <= 0.0:
            return [RLFailure(s.symbol, s.strategy_id, "timeout", "no time budget left")
                    for s in signals]
        cb = self.circuit_breaker
        if cb.reject_if_open(len(signals)):
            return [RLFailure(s.symbol, s.strategy_id, "circuit_open",
                              "circuit breaker open") for s in signals]
        slots: list[RLResult | None] = []
        admitted: list[int] = []
        for i, s in enumerate(signals):
            try:
                cb.before_call()
            except CircuitBreakerOpenException as exc:
                slots.append(RLFailure(s.symbol, s.strategy_id, "circuit_open", str(exc)))
                continue
            slots.append(None)
            admitted.append(i)
        return slots, admitted

    def _judge(self, signal: TacticalSignal, answer: RLResult, timeout: float) -> RLResult:
        """Step 5 for one admitted call."""
        cb = self.circuit_breaker
        if isinstance(answer, RLFailure):
            cb.record_failure(answer.reason)
            return answer
        latency = answer.latency_ms / 1000.0
        limit = min(timeout, cb.call_deadline_sec or math.inf)
        if latency > limit:
            cb.record_failure("slow")
            return RLFailure(signal.symbol, signal.strategy_id, "slow",
                             f"answered in {latency:.3f}s > {limit:g}s")
        cb.record_success(latency)
        if answer.confidence < self.min_confidence:
            return RLFailure(signal.symbol, signal.strategy_id, "low_confidence",
                             f"confidence {answer.confidence:g} < {self.min_confidence:g}")
        return answer

    def _finish(self, signals: Sequence[TacticalSignal], slots: list[RLResult | None],
                admitted: list[int], answers: Sequence[RLResult],
                timeout: float) -> list[RLResult]:
        if len(answers) != len(admitted):
            raise RuntimeError(f"RL transport {self.endpoint_url} answered {len(answers)} of "
                               f"{len(admitted)} requests")
        for i, answer in zip(admitted, answers, strict=True):
            slots[i] = self._judge(signals[i], answer, timeout)
        return self._done([r for r in slots if r is not None])

    def _done(self, results: list[RLResult]) -> list[RLResult]:
        self._stats.record_all(results)
        if self._tape is not None:
            self._tape.batches.append(results)
        return results

    def _cancelled(self, signals: Sequence[TacticalSignal], admitted: list[int]) -> None:
        for _ in admitted:
            self.circuit_breaker.record_failure("timeout")
        self._stats.record_all([RLFailure(signals[i].symbol, signals[i].strategy_id,
                                          "timeout", "cancelled") for i in admitted])

    def _timeout(self, deadline_sec: float) -> float:
        t = self.timeout_sec
        return deadline_sec if t is None else min(t, deadline_sec)

    async def predict_many(self, signals: Sequence[TacticalSignal],
                           market_data: dict[str, Any] | None = None,
                           total_deadline_sec: float = 0.15) -> list[RLResult]:
        """Answers for ``signals`` (in order) within one total deadline."""
        check_market_data(market_data)
        if self._replay is not None:
            return self._replayed(signals)
        staged = self._admit(signals, total_deadline_sec)
        if not isinstance(staged, tuple):
            return self._done(staged)
        slots, admitted = staged
        timeout = self._timeout(total_deadline_sec)
        answers: list[RLResult] = []
        if admitted:
            try:
                answers = await self.model.predict_many(
                    [signals[i] for i in admitted], market_data, timeout)
            except asyncio.CancelledError:
                self._cancelled(signals, admitted)
                raise
        return self._finish(signals, slots, admitted, answers, timeout)

    def predict_many_sync(self, signals: Sequence[TacticalSignal],
                          market_data: dict[str, Any] | None = None,
                          total_deadline_sec: float = 0.15) -> list[RLResult]:
        """Blocking `predict_many`; safe with or without a running event loop in this
        thread."""
        check_market_data(market_data)
        if self._replay is not None:
            return self._replayed(signals)
        staged = self._admit(signals, total_deadline_sec)
        if not isinstance(staged, tuple):
            return self._done(staged)
        slots, admitted = staged
        timeout = self._timeout(total_deadline_sec)
        answers: list[RLResult] = []
        if admitted:
            answers = self.model.predict_many_blocking(
                [signals[i] for i in admitted], market_data, timeout)
        return self._finish(signals, slots, admitted, answers, timeout)

    async def predict(self, signal: TacticalSignal, market_data: dict[str, Any] | None = None,
                      *, deadline_sec: float | None = None) -> RLResult:
        """One prediction, or an `RLFailure` saying why not (``deadline_sec`` may shorten
        the per-request timeout, e.g. to the remaining latency budget)."""
        return (await self.predict_many([signal], market_data, self._deadline(deadline_sec)))[0]

    def predict_sync(self, signal: TacticalSignal, market_data: dict[str, Any] | None = None,
                     *, deadline_sec: float | None = None) -> RLResult:
        """Blocking `predict`."""
        return self.predict_many_sync([signal], market_data, self._deadline(deadline_sec))[0]

    def _deadline(self, deadline_sec: float | None) -> float:
        if deadline_sec is not None:
            return deadline_sec
        return math.inf if self.timeout_sec is None else self.timeout_sec

    # -- state and lifecycle ---------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """Counters, failures by reason, mean latency and the breaker's state."""
        return {"endpoint": self.endpoint_url, **self._stats.snapshot(),
                "circuit_breaker": self.circuit_breaker.get_state()}

    def close(self) -> None:
        """Close the transport's connections (the guard stays usable)."""
        self.model.close()

    async def aclose(self) -> None:
        """Async `close` (the blocking part runs in a worker thread)."""
        await asyncio.to_thread(self.close)


ClientFactory = Callable[["Layer3Config", CircuitBreaker, Clock], GuardedModel]
_client_factory: ClientFactory | None = None


def install_client_factory(factory: ClientFactory) -> None:
    """Set how ``Layer3Phase3Hybrid(enable_rl=True, ...)`` builds its client from the
    config (the composition root, ``bootstrap``, installs the mock/HTTP one)."""
    global _client_factory  # noqa: PLW0603 - the one wiring point, set by bootstrap
    _client_factory = factory


def default_rl_client(config: Layer3Config, breaker: CircuitBreaker,
                      clock: Clock) -> GuardedModel:
    """The guarded client ``config.rl`` asks for, built by the installed factory."""
    if _client_factory is None:
        raise RuntimeError("RL is enabled but no RL client factory is installed: import "
                           "himari_l3 (its bootstrap installs the mock and HTTP clients)")
    return _client_factory(config, breaker, clock)
