"""The HTTP transport of the RL model port (httpx), and the wire contract's codecs.

Contract: ``POST <endpoint_url>`` with the signal's fields plus ``market_data``; a 2xx JSON
answer with ``position_pct`` [-1, 1], ``confidence`` [0, 1], ``predicted_return`` [-1, 1],
``predicted_volatility`` [0, 5] (all finite real numbers, never strings or booleans) and a
non-empty ``model_version``. Anything else is an `RLFailure` (``http_error``,
``invalid_response``, ``timeout``, ``connection_error``, or ``oversize``: a body over
``max_response_bytes``, which is streamed and never read past that size); the guard around
the transport (``rl_guard.py``) decides what that means for the breaker.

Every HTTP call runs on one event loop owned by the transport (a daemon thread), using one
pooled ``httpx.AsyncClient``: an httpx connection pool is bound to the loop that created it,
so the async API (awaited from any loop) and the blocking one (called from any thread,
including one that is running its own loop) both hop onto that loop instead of opening a
second pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
import weakref
from collections.abc import Coroutine, Sequence
from typing import Any, Final, TypeVar

import httpx

from .._clock import SYSTEM_CLOCK, Clock
from .._exceptions import InvalidRLPredictionException, ValidationError
from ..contracts import RLPrediction, TacticalSignal
from ..rl_port import RLFailure, RLResult, gather_with_deadline

__all__ = ["HttpModel", "encode_request", "parse_prediction"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How long a blocking caller waits beyond the call's own deadline before giving up on the loop
# thread itself (it only matters if that thread is wedged; the coroutine is already bounded).
_SYNC_GRACE_SEC: Final = 5.0
# A prediction is ~200 bytes of JSON; the default leaves room for verbose models.
DEFAULT_MAX_RESPONSE_BYTES: Final = 65_536
_HEADERS: Final = {"content-type": "application/json",
                   # No compression: the size bound is on what the model sends.
                   "accept-encoding": "identity"}


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


def _stop_loop(loop: asyncio.AbstractEventLoop) -> None:
    # weakref finalizer: stop the loop thread of a client that was never closed.
    if not loop.is_closed():
        loop.call_soon_threadsafe(loop.stop)


class HttpModel:
    """Asks a remote model over HTTP (one request per signal, in parallel).

    Parameters
    ----------
    endpoint_url : full URL of the model's predict route (``http://host:port/predict``).
    clock : time source for latency (default the system clock).
    transport : an ``httpx.AsyncBaseTransport`` (tests use ``httpx.MockTransport``).
    max_connections : size of the connection pool.
    max_response_bytes : a response body over this is the failure ``oversize`` (the body is
        streamed and never read past the limit; a declared ``Content-Length`` over it is
        refused before reading).
    """

    def __init__(self, endpoint_url: str, *, clock: Clock | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 max_connections: int = 20,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections was {max_connections!r}, expected >= 1")
        if max_response_bytes < 1:
            raise ValueError(f"max_response_bytes was {max_response_bytes!r}, expected >= 1")
        self.max_response_bytes = max_response_bytes
        self.endpoint_url = endpoint_url
        self._clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self._transport = transport
        self._max_connections = max_connections
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._loop_lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return self.endpoint_url

    # -- the transport's own event loop ----------------------------------------------------

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
        # Cancelling the awaiting task cancels the coroutine on the transport's loop too.
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    def _run_sync(self, coro: Coroutine[Any, Any, T], bound_sec: float) -> T:
        loop = self._ensure_loop()
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a blocking RL call from the RL transport's own loop thread")
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(timeout=bound_sec + _SYNC_GRACE_SEC)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"RL transport loop did not answer within {bound_sec:g}s "
                               f"+ {_SYNC_GRACE_SEC:g}s grace") from None

    @property
    def http_client(self) -> httpx.AsyncClient | None:
        """The pooled client (None until the first request, and again after `close`)."""
        return self._http

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:  # only ever touched on the transport's loop: no lock needed
            limits = httpx.Limits(max_connections=self._max_connections,
                                  max_keepalive_connections=self._max_connections)
            self._http = httpx.AsyncClient(transport=self._transport, limits=limits)
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
        """Close the pooled HTTP client and stop the loop thread (the transport stays
        usable: the next call starts them again)."""
        with self._loop_lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        if threading.current_thread() is thread:
            raise RuntimeError("close() called from the RL transport's own loop thread")
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(_SYNC_GRACE_SEC)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(_SYNC_GRACE_SEC)
            if not thread.is_alive():
                loop.close()

    # -- the port --------------------------------------------------------------------------

    async def predict_many(self, signals: Sequence[TacticalSignal],
                           market_data: dict[str, Any] | None,
                           deadline_sec: float) -> list[RLResult]:
        bodies = [encode_request(s, market_data) for s in signals]
        return await self._on_own_loop(self._fan_out(list(signals), bodies, deadline_sec))

    def predict_many_blocking(self, signals: Sequence[TacticalSignal],
                              market_data: dict[str, Any] | None,
                              deadline_sec: float) -> list[RLResult]:
        bodies = [encode_request(s, market_data) for s in signals]
        return self._run_sync(self._fan_out(list(signals), bodies, deadline_sec), deadline_sec)

    async def _fan_out(self, signals: list[TacticalSignal], bodies: list[bytes],
                       deadline_sec: float) -> list[RLResult]:
        coros = [self._one(s, b, deadline_sec) for s, b in zip(signals, bodies, strict=True)]
        return await gather_with_deadline(signals, coros, deadline_sec)

    async def _one(self, signal: TacticalSignal, body: bytes, timeout: float) -> RLResult:
        start = self._clock.monotonic()
        try:
            async with asyncio.timeout(timeout):
                status, content = await self._post(body, timeout)
        except (TimeoutError, httpx.TimeoutException) as exc:
            return _failure(signal, "timeout", f"no answer within {timeout:g}s ({exc!r})")
        except (httpx.TransportError, OSError) as exc:
            return _failure(signal, "connection_error", repr(exc))
        except Exception as exc:  # anything else from httpx is still the endpoint failing
            logger.exception("unexpected error calling the RL endpoint %s", self.endpoint_url)
            return _failure(signal, "http_error", repr(exc))
        return self._answer(signal, status, content, self._clock.monotonic() - start)

    def _answer(self, signal: TacticalSignal, status: int, content: bytes | None,
                latency: float) -> RLResult:
        """What an answer that came back in time means."""
        if not 200 <= status < 300:
            return _failure(signal, "http_error", f"HTTP {status}")
        if content is None:
            return _failure(signal, "oversize", f"response body over max_response_bytes "
                            f"({self.max_response_bytes} bytes): not read further")
        try:
            return parse_prediction(content, latency * 1000.0, self._clock.time_ns())
        except InvalidRLPredictionException as exc:
            return _failure(signal, "invalid_response", str(exc))

    async def _post(self, body: bytes, timeout: float) -> tuple[int, bytes | None]:
        """POST ``body``; the status and the response body, read as a stream and at most
        ``max_response_bytes`` of it (None: it is longer). A non-2xx body is not read."""
        limit = self.max_response_bytes
        async with self._client().stream("POST", self.endpoint_url, content=body,
                                         timeout=timeout, headers=_HEADERS) as response:
            status = response.status_code
            if not 200 <= status < 300:
                return status, b""
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                return status, None
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    return status, None
                chunks.append(chunk)
            return status, b"".join(chunks)


def _failure(signal: TacticalSignal, reason: str, detail: str) -> RLFailure:
    logger.debug("RL prediction failed for %s/%s: %s (%s)", signal.strategy_id, signal.symbol,
                 reason, detail)
    return RLFailure(signal.symbol, signal.strategy_id, reason, detail)


def _run_loop(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
    # Module-level (not a method) so the thread holds no reference to the client and an
    # unclosed client can still be garbage-collected (its finalizer then stops this loop).
    asyncio.set_event_loop(loop)
    loop.call_soon(started.set)
    loop.run_forever()
