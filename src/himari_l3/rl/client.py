"""HTTP client for the RL model, guarded by a `CircuitBreaker`.

Contract: ``POST <endpoint_url>`` with the signal's fields plus ``market_data``; a 2xx JSON answer
with ``position_pct`` [-1, 1], ``confidence`` [0, 1], ``predicted_return`` [-1, 1],
``predicted_volatility`` [0, 5] (all finite real numbers, never strings or booleans) and a
non-empty ``model_version``. Anything else is a failure, returned as an `RLFailure` value whose
``reason`` is one of `FAILURE_REASONS` — a fallback is a value with a reason, never ``None``.

Every HTTP call runs on one event loop owned by the client (a daemon thread), using one pooled
``httpx.AsyncClient``: an httpx connection pool is bound to the loop that created it, so the
async API (awaited from any loop) and the sync API (called from any thread, including one that
is running its own loop) both hop onto that loop instead of opening a second pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import math
import threading
import weakref
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import httpx

from .._clock import SYSTEM_CLOCK, Clock
from .._exceptions import (
    CircuitBreakerOpenException,
    InvalidRLPredictionException,
    ValidationError,
)
from ..contracts import RLPrediction, TacticalSignal
from ..resilience import CircuitBreaker

__all__ = [
    "FAILURE_REASONS",
    "ClientStatsMixin",
    "RLFailure",
    "RLResult",
    "TransformerRLClient",
    "encode_request",
    "gather_with_deadline",
    "parse_prediction",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How long a sync caller waits beyond the call's own deadline before giving up on the loop
# thread itself (it only matters if that thread is wedged; the coroutine is already bounded).
_SYNC_GRACE_SEC: Final = 5.0

FAILURE_REASONS: Final = frozenset({"timeout", "connection_error", "http_error",
                                    "invalid_response", "slow", "circuit_open", "low_confidence"})


@dataclass(frozen=True, slots=True)
class RLFailure:
    """Why the RL model gave no usable prediction for one signal (the caller falls back).

    ``reason`` is one of `FAILURE_REASONS` (a bounded set, safe as a metric label); ``detail``
    is free text for logs and the decision trace.
    """

    symbol: str
    strategy_id: str
    reason: str
    detail: str = ""

    def __post_init__(self) -> None:
        if self.reason not in FAILURE_REASONS:
            raise ValueError(f"reason was {self.reason!r}, expected one of "
                             f"{sorted(FAILURE_REASONS)}")


RLResult = RLPrediction | RLFailure


class PredictionStats:
    """Thread-safe counters behind ``get_state()`` of the RL clients."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = self._ok = 0
        self._by_reason: dict[str, int] = {}
        self._latency_sum_ms = 0.0

    def record(self, result: RLResult) -> None:
        """Count one outcome (latency is averaged over successful predictions)."""
        with self._lock:
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


class ClientStatsMixin:
    """Statistics shared by the real and the mock client (``get_state`` and counting)."""

    endpoint_url: str
    circuit_breaker: CircuitBreaker
    _stats: PredictionStats

    def record_results(self, results: Sequence[RLResult]) -> None:
        """Count results produced on this client's behalf (the orchestrator's open-breaker
        fast path fails a batch without calling the client)."""
        for result in results:
            self._stats.record(result)

    def get_state(self) -> dict[str, Any]:
        """Counters, failures by reason, mean latency and the breaker's state."""
        return {"endpoint": self.endpoint_url, **self._stats.snapshot(),
                "circuit_breaker": self.circuit_breaker.get_state()}


def encode_request(signal: TacticalSignal, market_data: dict[str, Any] | None) -> bytes:
    """The request body: the signal's fields plus ``market_data`` (caller input errors raise
    `ValidationError` here, before the breaker or the network is involved)."""
    body = signal.to_dict()
    body["market_data"] = market_data
    try:
        return json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as err:
        raise ValidationError("market_data", market_data,
                              f"a JSON object of finite values ({err})") from None


def parse_prediction(body: bytes, latency_ms: float, timestamp_ns: int) -> RLPrediction:
    """Validate a response body into an `RLPrediction` or raise `InvalidRLPredictionException`.

    ``json.loads`` accepts ``NaN``/``Infinity`` literals; the contract's finite-range checks then
    reject them, as they reject strings and booleans posing as numbers.
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidRLPredictionException("body", body[:60], "a JSON object") from None
    if not isinstance(data, dict):
        raise InvalidRLPredictionException("body", data, "a JSON object")
    missing = [k for k in ("position_pct", "confidence", "predicted_return",
                           "predicted_volatility", "model_version") if k not in data]
    if missing:
        raise InvalidRLPredictionException(missing[0], None, "a value (field missing)")
    return RLPrediction(
        optimal_position_pct=data["position_pct"],
        confidence=data["confidence"],
        predicted_return=data["predicted_return"],
        predicted_volatility=data["predicted_volatility"],
        model_version=data["model_version"],
        latency_ms=min(max(latency_ms, 0.0), 1e7),
        timestamp_ns=timestamp_ns,
    )


async def gather_with_deadline(
    signals: Sequence[TacticalSignal],
    coros: Sequence[Coroutine[Any, Any, RLResult]],
    total_deadline_sec: float,
) -> list[RLResult]:
    """Run ``coros`` concurrently; any still running at the deadline is cancelled and becomes
    ``RLFailure(reason="timeout")`` (the coroutine itself reports the failure to its breaker)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    if not tasks:
        return []
    try:
        await asyncio.wait(tasks, timeout=max(total_deadline_sec, 0.0))
    finally:
        pending = [t for t in tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    return [
        RLFailure(s.symbol, s.strategy_id, "timeout",
                  f"still running at the {total_deadline_sec:g}s total deadline")
        if t.cancelled() else t.result()
        for s, t in zip(signals, tasks, strict=True)
    ]


def _stop_loop(loop: asyncio.AbstractEventLoop) -> None:
    # weakref finalizer: stop the loop thread of a client that was never closed.
    if not loop.is_closed():
        loop.call_soon_threadsafe(loop.stop)


class TransformerRLClient(ClientStatsMixin):
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

    Arguments after ``min_confidence`` are keyword-only.
    """

    def __init__(
        self,
        endpoint_url: str,
        timeout_sec: float = 0.15,
        min_confidence: float = 0.0,
        *,
        circuit_breaker: CircuitBreaker | None = None,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 20,
    ) -> None:
        if not (math.isfinite(timeout_sec) and timeout_sec > 0):
            raise ValueError(f"timeout_sec was {timeout_sec!r}, expected a finite number > 0")
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence was {min_confidence!r}, expected 0 <= x <= 1")
        if max_connections < 1:
            raise ValueError(f"max_connections was {max_connections!r}, expected >= 1")
        self.endpoint_url = endpoint_url
        self.timeout_sec = float(timeout_sec)
        self.min_confidence = float(min_confidence)
        self._clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self.circuit_breaker = circuit_breaker if circuit_breaker is not None else (
            CircuitBreaker("rl", call_deadline_sec=self.timeout_sec, clock=self._clock))
        self._transport = transport
        self._max_connections = max_connections
        self._stats = PredictionStats()
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._loop_lock = threading.Lock()

    # -- the client's own event loop -------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._loop_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                started = threading.Event()
                thread = threading.Thread(target=_run_loop, args=(loop, started), daemon=True,
                                          name=f"himari-rl-client-{id(self):x}")
                thread.start()
                started.wait(5.0)
                self._loop, self._thread = loop, thread
                weakref.finalize(self, _stop_loop, loop)
            return self._loop

    async def _on_own_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._ensure_loop()
        if asyncio.get_running_loop() is loop:
            return await coro
        # Cancelling the awaiting task cancels the coroutine on the client's loop too.
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    def _run_sync(self, coro: Coroutine[Any, Any, T], bound_sec: float) -> T:
        loop = self._ensure_loop()
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("predict_*_sync called from the RL client's own loop thread")
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(timeout=bound_sec + _SYNC_GRACE_SEC)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"RL client loop did not answer within {bound_sec:g}s "
                               f"+ {_SYNC_GRACE_SEC:g}s grace") from None

    @property
    def http_client(self) -> httpx.AsyncClient | None:
        """The pooled client (None until the first request, and again after `close`)."""
        return self._http

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:  # only ever touched on the client's loop: no lock needed
            limits = httpx.Limits(max_connections=self._max_connections,
                                  max_keepalive_connections=self._max_connections)
            self._http = httpx.AsyncClient(transport=self._transport, limits=limits,
                                           timeout=httpx.Timeout(self.timeout_sec))
        return self._http

    async def _shutdown(self) -> None:
        current = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not current]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    def close(self) -> None:
        """Close the pooled HTTP client and stop the loop thread (the client stays usable:
        the next call starts them again)."""
        with self._loop_lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        if threading.current_thread() is thread:
            raise RuntimeError("close() called from the RL client's own loop thread")
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(_SYNC_GRACE_SEC)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(_SYNC_GRACE_SEC)
            if not thread.is_alive():
                loop.close()

    async def aclose(self) -> None:
        """Async `close` (the blocking part runs in a worker thread)."""
        await asyncio.to_thread(self.close)

    # -- predictions -----------------------------------------------------------------------

    async def predict(
        self,
        signal: TacticalSignal,
        market_data: dict[str, Any] | None = None,
        *,
        deadline_sec: float | None = None,
    ) -> RLResult:
        """One prediction, or an `RLFailure` saying why not (``deadline_sec`` may shorten the
        per-request timeout, e.g. to the remaining latency budget)."""
        body = encode_request(signal, market_data)
        timeout = self.timeout_sec if deadline_sec is None else min(self.timeout_sec,
                                                                     max(deadline_sec, 0.0))
        return await self._on_own_loop(self._predict_recorded(signal, body, timeout))

    async def predict_many(
        self,
        signals: Sequence[TacticalSignal],
        market_data: dict[str, Any] | None = None,
        total_deadline_sec: float = 0.15,
    ) -> list[RLResult]:
        """Predictions for all ``signals`` in parallel, in input order, within one total
        deadline (``market_data`` is sent with every request)."""
        bodies = [encode_request(s, market_data) for s in signals]
        return await self._on_own_loop(self._predict_many(list(signals), bodies,
                                                          total_deadline_sec))

    def predict_sync(
        self,
        signal: TacticalSignal,
        market_data: dict[str, Any] | None = None,
        *,
        deadline_sec: float | None = None,
    ) -> RLResult:
        """Blocking `predict`; safe with or without a running event loop in this thread."""
        bound = self.timeout_sec if deadline_sec is None else deadline_sec
        return self._run_sync(self.predict(signal, market_data, deadline_sec=deadline_sec),
                              bound)

    def predict_many_sync(
        self,
        signals: Sequence[TacticalSignal],
        market_data: dict[str, Any] | None = None,
        total_deadline_sec: float = 0.15,
    ) -> list[RLResult]:
        """Blocking `predict_many`; safe with or without a running event loop in this thread."""
        return self._run_sync(self.predict_many(signals, market_data, total_deadline_sec),
                              total_deadline_sec)

    async def _predict_recorded(self, signal: TacticalSignal, body: bytes,
                                timeout: float) -> RLResult:
        try:
            result = await self._predict_one(signal, body, timeout)
        except asyncio.CancelledError:
            self._stats.record(RLFailure(signal.symbol, signal.strategy_id, "timeout",
                                         "cancelled"))
            raise
        self._stats.record(result)
        return result

    async def _predict_many(self, signals: list[TacticalSignal], bodies: list[bytes],
                            total_deadline_sec: float) -> list[RLResult]:
        timeout = min(self.timeout_sec, max(total_deadline_sec, 0.0))
        coros = [self._predict_one(s, b, timeout) for s, b in zip(signals, bodies, strict=True)]
        results = await gather_with_deadline(signals, coros, total_deadline_sec)
        for result in results:
            self._stats.record(result)
        return results

    async def _predict_one(self, signal: TacticalSignal, body: bytes,
                           timeout: float) -> RLResult:
        if timeout <= 0.0:
            # No budget left: not the endpoint's fault, so the breaker is not involved.
            return RLFailure(signal.symbol, signal.strategy_id, "timeout", "no time budget left")
        try:
            self.circuit_breaker.before_call()
        except CircuitBreakerOpenException as exc:
            return RLFailure(signal.symbol, signal.strategy_id, "circuit_open", str(exc))
        start = self._clock.monotonic()
        try:
            async with asyncio.timeout(timeout):
                response = await self._client().post(
                    self.endpoint_url, content=body,
                    headers={"content-type": "application/json"})
        except asyncio.CancelledError:
            # Cancelled by a total deadline (or shutdown): the admitted call must be reported,
            # otherwise a HALF_OPEN probe slot would stay taken.
            self.circuit_breaker.record_failure("timeout")
            raise
        except (TimeoutError, httpx.TimeoutException) as exc:
            return self._fail(signal, "timeout", f"no answer within {timeout:g}s ({exc!r})")
        except (httpx.TransportError, OSError) as exc:
            return self._fail(signal, "connection_error", repr(exc))
        except Exception as exc:  # anything else from httpx is still the endpoint failing
            logger.exception("unexpected error calling the RL endpoint %s", self.endpoint_url)
            return self._fail(signal, "http_error", repr(exc))
        latency = self._clock.monotonic() - start
        return self._judge(signal, response, latency, timeout)

    def _judge(self, signal: TacticalSignal, response: httpx.Response, latency: float,
               timeout: float) -> RLResult:
        if not 200 <= response.status_code < 300:
            return self._fail(signal, "http_error", f"HTTP {response.status_code}")
        try:
            prediction = parse_prediction(response.content, latency * 1000.0,
                                          self._clock.time_ns())
        except InvalidRLPredictionException as exc:
            return self._fail(signal, "invalid_response", str(exc))
        limit = min(timeout, self.circuit_breaker.call_deadline_sec or math.inf)
        if latency > limit:
            return self._fail(signal, "slow", f"answered in {latency:.3f}s > {limit:g}s")
        self.circuit_breaker.record_success(latency)
        if prediction.confidence < self.min_confidence:
            return RLFailure(signal.symbol, signal.strategy_id, "low_confidence",
                             f"confidence {prediction.confidence:g} < {self.min_confidence:g}")
        return prediction

    def _fail(self, signal: TacticalSignal, reason: str, detail: str) -> RLFailure:
        self.circuit_breaker.record_failure(reason)
        logger.debug("RL prediction failed for %s/%s: %s (%s)", signal.strategy_id,
                     signal.symbol, reason, detail)
        return RLFailure(signal.symbol, signal.strategy_id, reason, detail)


def _run_loop(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
    # Module-level (not a method) so the thread holds no reference to the client and an
    # unclosed client can still be garbage-collected (its finalizer then stops this loop).
    asyncio.set_event_loop(loop)
    loop.call_soon(started.set)
    loop.run_forever()
