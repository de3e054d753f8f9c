"""uvicorn's HTTP/1.1 protocol with a bound on how long a request's headers may take.

uvicorn bounds the body only through the app (``EdgeMiddleware``'s body read timeout) and
the idle time between requests (``timeout_keep_alive``); a client that opens a connection
and sends its request line and headers slowly — or nothing at all — holds the connection
for ever (uvicorn has no header timeout option). `header_timeout_protocol` returns uvicorn's
h11 protocol class with one: a request's headers must be complete within
``service.header_read_timeout_sec``, else the connection is closed (nothing can be answered:
there is no request yet). The clock starts when the connection opens, and on a kept-alive
connection when the previous response is complete (uvicorn's shorter keep-alive timeout
still closes an idle one first). Pass it as ``uvicorn.Config(http=...)``.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["header_timeout_protocol"]


class _HeaderTimeoutH11(H11Protocol):
    header_timeout_sec = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
            self._disarm()  # the headers are complete (or the connection is closing)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._disarm()
            self._arm()  # the next request's headers (possibly already buffered)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout_sec, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.info("closing a connection whose request headers did not arrive "
                             "within %gs", self.header_timeout_sec)
            self.transport.close()


def header_timeout_protocol(timeout_sec: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol closing connections whose headers take over ``timeout_sec``."""
    if not timeout_sec > 0:
        raise ValueError(f"timeout_sec was {timeout_sec!r}, expected > 0")
    return type("HeaderTimeoutH11Protocol", (_HeaderTimeoutH11,),
                {"header_timeout_sec": float(timeout_sec)})
