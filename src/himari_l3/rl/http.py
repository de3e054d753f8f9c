"""The HTTP transport of the RL model port (httpx).

The wire contract and its codecs are in ``wire.py``: per signal, ``POST <endpoint_url>``
answered by one prediction; in a batch, ``POST <batch URL>`` answered by one prediction per
signal, used only when the model advertises the route in ``GET <healthz>``. Any answer that
breaks the contract is an `RLFailure` (``http_error``, ``invalid_response``, ``timeout``,
``connection_error``, or ``oversize``: a body over ``max_response_bytes`` — times the number
of signals for a batch — which is streamed and never read past that size), per signal: a
batch answer with the wrong count, a body that is not JSON, a non-2xx status, an oversize or
late body fails every signal of that request with the reason a per-signal request would
have had; a bad item fails its own signal only. The guard around the transport
(``rl_guard.py``) decides what that means for the breaker.

Start-up (`warm_up`, called by the guard when it is built): the transport's event loop, its
clients (no TLS context for ``http://``; one verifying context for ``https://``) and up to ten
keep-alive connections are made, and the health route is read for the batch advertisement —
all bounded by ``timeout_sec``, whether the model answers, refuses or hangs. A model that
advertised nothing (or could not be reached) is asked again in the background at most every
30 s (`REPROBE_SEC`, on the transport's clock), never on a decision's path; a batch route that
answers 404/405/501 is forgotten and that request re-sent per signal.

Every HTTP call runs on the transport's own event loop (``loop.py``) with clients lent by a
`ClientPool` (``pool.py``: why one-connection clients).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from .._clock import SYSTEM_CLOCK, Clock
from .._exceptions import InvalidRLPredictionException
from ..contracts import TacticalSignal
from ..rl_port import RLFailure, RLResult, gather_groups_with_deadline, gather_with_deadline
from .loop import LoopThread
from .pool import ClientPool
from .wire import (
    BatchRoute,
    encode_batch_request,
    encode_request,
    healthz_url,
    parse_batch,
    parse_capabilities,
    parse_prediction,
)

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "REPROBE_SEC", "HttpModel", "encode_request",
           "parse_prediction"]

logger = logging.getLogger(__name__)

# A prediction is ~200 bytes of JSON; the default leaves room for verbose models.
DEFAULT_MAX_RESPONSE_BYTES: Final = 65_536
# How often a model that advertised no batch route is asked again (transport clock seconds).
REPROBE_SEC: Final = 30.0
# Connections opened at start: a decision of ten signals asked one by one opens none.
WARM_CONNECTIONS: Final = 10
_WARM_GRACE_SEC: Final = 0.25
_HEALTHZ_MAX_BYTES: Final = 16_384
_NOT_SERVED: Final = frozenset({404, 405, 501})
_HEADERS: Final = {"content-type": "application/json",
                   # No compression: the size bound is on what the model sends.
                   "accept-encoding": "identity"}


@dataclass(frozen=True, slots=True)
class _Failed:
    """A request that got no usable HTTP answer (its `RLFailure` reason and detail)."""

    reason: str
    detail: str


class HttpModel:
    """Asks a remote model over HTTP: one batch request per decision where the model
    advertises a batch route, else one request per signal, in parallel.

    Parameters
    ----------
    endpoint_url : full URL of the model's predict route (``http://host:port/predict``).
    clock : time source for latency and the re-probe interval (default the system clock).
    transport : an ``httpx.AsyncBaseTransport`` (tests use ``httpx.MockTransport``).
    max_connections : most requests in flight at once (one connection each).
    max_response_bytes : a per-signal answer over this is the failure ``oversize`` (streamed
        and never read past the limit; a declared ``Content-Length`` over it is refused before
        reading); a batch answer may be this many bytes per signal it carries.
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
        self.healthz_url = healthz_url(endpoint_url)
        self._clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self._transport = transport
        self._max_connections = max_connections
        self._loop = LoopThread(f"himari-rl-client-{id(self):x}", self)
        self._pool: ClientPool | None = None
        self._tls: ssl.SSLContext | None = None
        self._batch: BatchRoute | None = None
        self._probe_timeout = 1.0
        self._probed_at: float | None = None
        self._probe: asyncio.Task[None] | None = None

    @property
    def endpoint(self) -> str:
        return self.endpoint_url

    @property
    def batch_route(self) -> BatchRoute | None:
        """The advertised batch route in use (None: one request per signal)."""
        return self._batch

    @property
    def clients(self) -> tuple[httpx.AsyncClient, ...]:
        """The pooled clients made so far (empty before `warm_up` and after `close`)."""
        pool = self._pool
        return pool.clients if pool is not None else ()

    @property
    def http_client(self) -> httpx.AsyncClient | None:
        """The first pooled client (None before `warm_up` or the first request, and again
        after `close`)."""
        pool = self._pool
        return pool.clients[0] if pool is not None and pool.clients else None

    # -- start and stop --------------------------------------------------------------------

    def warm_up(self, timeout_sec: float) -> None:
        """Start the loop, make the clients, open up to `WARM_CONNECTIONS` connections and
        read the batch advertisement, waiting at most ``timeout_sec`` (plus a quarter second
        for the thread hop); never raises: a model that refuses or hangs is found out on the
        first decision, as it would have been without a warm-up."""
        self._probe_timeout = timeout_sec
        try:
            self._loop.submit(self._warm(timeout_sec)).result(timeout_sec + _WARM_GRACE_SEC)
        except Exception as exc:  # a wedged loop or anything unforeseen: start anyway
            logger.warning("RL transport warm-up of %s did not finish: %r", self.endpoint_url,
                           exc)

    async def _warm(self, timeout_sec: float) -> None:
        pool = self._clients()
        pool.fill(WARM_CONNECTIONS)
        await self._discover(timeout_sec, len(pool.clients))
        pool.fill(WARM_CONNECTIONS)  # replaces clients whose probe was cut short (a hang)

    def _clients(self) -> ClientPool:
        if self._pool is None:  # only ever touched on the transport's loop: no lock needed
            verify: ssl.SSLContext | bool = False  # plain http: no TLS context at all
            if urlsplit(self.endpoint_url).scheme == "https":
                if self._tls is None:  # one verifying context, shared by the clients
                    self._tls = httpx.create_ssl_context()
                verify = self._tls
            limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
            self._pool = ClientPool(self._max_connections, lambda: httpx.AsyncClient(
                transport=self._transport, limits=limits, verify=verify))
        return self._pool

    async def _discover(self, timeout_sec: float, connections: int) -> None:
        """GET the health route on ``connections`` clients at once (opening as many
        connections, through the code path a prediction takes) and adopt the batch route the
        first good answer advertises."""
        self._probed_at = self._clock.monotonic()
        replies = await asyncio.gather(*(
            self._exchange("GET", self.healthz_url, None, timeout_sec, _HEALTHZ_MAX_BYTES)
            for _ in range(max(connections, 1))))
        found = next((route for route in map(self._advertised, replies) if route is not None),
                     None)
        if found != self._batch:
            logger.info("RL model %s: %s", self.endpoint_url,
                        f"batch route {found.url} (up to {found.max_signals} signals)"
                        if found is not None else "per-signal requests")
        self._batch = found

    def _advertised(self, reply: tuple[int, bytes | None] | _Failed) -> BatchRoute | None:
        if isinstance(reply, _Failed):  # refused, hung, reset...: no advertisement
            logger.debug("RL health probe of %s failed: %s", self.healthz_url, reply)
            return None
        status, body = reply
        if not 200 <= status < 300 or body is None:
            return None
        return parse_capabilities(body, self.endpoint_url)

    def _maybe_reprobe(self) -> None:
        """On the loop: ask the health route again in the background when no batch route
        is known and `REPROBE_SEC` have passed since the last look."""
        if self._batch is not None or (self._probe is not None and not self._probe.done()):
            return
        last = self._probed_at
        if last is not None and self._clock.monotonic() - last < REPROBE_SEC:
            return
        self._probed_at = self._clock.monotonic()
        self._probe = asyncio.get_running_loop().create_task(
            self._discover(self._probe_timeout, 1))

    def _forget_batch(self, route: BatchRoute, status: int) -> None:
        if self._batch == route:
            logger.warning("RL model %s answered HTTP %d on its advertised batch route %s: "
                           "asking per signal", self.endpoint_url, status, route.url)
            self._batch = None
            self._probed_at = self._clock.monotonic()

    async def _shutdown(self) -> None:
        current = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not current]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.aclose()

    def close(self) -> None:
        """Close the pooled clients and stop the loop thread (the transport stays usable:
        the next call starts them again; the batch route learnt is kept)."""
        self._loop.stop(self._shutdown)

    # -- the port --------------------------------------------------------------------------

    async def predict_many(self, signals: Sequence[TacticalSignal],
                           market_data: dict[str, Any] | None,
                           deadline_sec: float) -> list[RLResult]:
        return await self._loop.run_async(self._plan(signals, market_data, deadline_sec))

    def predict_many_blocking(self, signals: Sequence[TacticalSignal],
                              market_data: dict[str, Any] | None,
                              deadline_sec: float) -> list[RLResult]:
        return self._loop.run_blocking(self._plan(signals, market_data, deadline_sec),
                                       deadline_sec)

    def _plan(self, signals: Sequence[TacticalSignal], market_data: dict[str, Any] | None,
              deadline_sec: float) -> Coroutine[Any, Any, list[RLResult]]:
        """The requests for ``signals``, encoded here (a caller input error raises before
        anything is sent), as one coroutine to run on the transport's loop."""
        route = self._batch
        if route is None or len(signals) < 2:
            bodies = [encode_request(s, market_data) for s in signals]
            return self._fan_out(list(signals), bodies, deadline_sec)
        step = route.max_signals
        chunks = [list(signals[i:i + step]) for i in range(0, len(signals), step)]
        coros = [self._one_batch(route, chunk, encode_batch_request(chunk, market_data),
                                 market_data, deadline_sec) for chunk in chunks]
        return gather_groups_with_deadline(chunks, coros, deadline_sec)

    async def _fan_out(self, signals: list[TacticalSignal], bodies: list[bytes],
                       deadline_sec: float) -> list[RLResult]:
        self._maybe_reprobe()
        coros = [self._one(s, b, deadline_sec) for s, b in zip(signals, bodies, strict=True)]
        return await gather_with_deadline(signals, coros, deadline_sec)

    async def _one(self, signal: TacticalSignal, body: bytes, timeout: float) -> RLResult:
        start = self._clock.monotonic()
        reply = await self._exchange("POST", self.endpoint_url, body, timeout,
                                     self.max_response_bytes)
        if isinstance(reply, _Failed):
            return _failure(signal, reply.reason, reply.detail)
        status, content = reply
        if not 200 <= status < 300:
            return _failure(signal, "http_error", f"HTTP {status}")
        if content is None:
            return _failure(signal, "oversize", f"response body over max_response_bytes "
                            f"({self.max_response_bytes} bytes): not read further")
        try:
            return parse_prediction(content, (self._clock.monotonic() - start) * 1000.0,
                                    self._clock.time_ns())
        except InvalidRLPredictionException as exc:
            return _failure(signal, "invalid_response", str(exc))

    async def _one_batch(self, route: BatchRoute, chunk: list[TacticalSignal], body: bytes,
                         market_data: dict[str, Any] | None,
                         timeout: float) -> list[RLResult]:
        """One batch request: a result per signal of ``chunk``, in order."""
        start = self._clock.monotonic()
        began = asyncio.get_running_loop().time()
        limit = self.max_response_bytes * len(chunk)
        reply = await self._exchange("POST", route.url, body, timeout, limit)
        if isinstance(reply, _Failed):
            return [_failure(s, reply.reason, reply.detail) for s in chunk]
        status, content = reply
        if status in _NOT_SERVED:  # the route is gone (a restarted, older model?)
            self._forget_batch(route, status)
            left = timeout - (asyncio.get_running_loop().time() - began)
            return await self._fan_out(chunk, [encode_request(s, market_data) for s in chunk],
                                       left)
        if not 200 <= status < 300:
            return [_failure(s, "http_error", f"HTTP {status} (batch)") for s in chunk]
        if content is None:
            return [_failure(s, "oversize", f"batch response body over {limit} bytes "
                             f"(max_response_bytes {self.max_response_bytes} x {len(chunk)} "
                             "signals): not read further") for s in chunk]
        latency_ms = (self._clock.monotonic() - start) * 1000.0
        try:
            return parse_batch(content, chunk, latency_ms, self._clock.time_ns())
        except InvalidRLPredictionException as exc:
            return [_failure(s, "invalid_response", f"batch: {exc}") for s in chunk]

    async def _exchange(self, method: str, url: str, body: bytes | None, timeout: float,
                        limit: int) -> tuple[int, bytes | None] | _Failed:
        """One request within ``timeout``: the status and body, or why there is none."""
        try:
            async with asyncio.timeout(timeout):
                return await self._request(method, url, body, timeout, limit)
        except (TimeoutError, httpx.TimeoutException) as exc:
            return _Failed("timeout", f"no answer within {timeout:g}s ({exc!r})")
        except (httpx.TransportError, OSError) as exc:
            return _Failed("connection_error", repr(exc))
        except Exception as exc:  # anything else from httpx is still the endpoint failing
            logger.exception("unexpected error calling the RL model at %s", url)
            return _Failed("http_error", repr(exc))

    async def _request(self, method: str, url: str, body: bytes | None, timeout: float,
                       limit: int) -> tuple[int, bytes | None]:
        """The status and the response body, read as a stream and at most ``limit`` bytes of
        it (None: it is longer). A non-2xx body is not read."""
        async with self._clients().lease() as client, client.stream(
                method, url, content=body, timeout=timeout, headers=_HEADERS) as response:
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
