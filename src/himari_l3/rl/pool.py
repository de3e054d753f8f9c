"""A pool of one-connection httpx clients, each lent to one request at a time.

Why not one client with an N-connection pool: httpcore's pool re-examines every connection
for every queued request on each event (``_assign_requests_to_connections``, with a socket
poll per idle connection), so ten parallel requests on one pool cost ~10x what one costs,
plus a quadratic term. Measured on the project's machine, 10 parallel requests to a loopback
model answering after 20 ms: one 20-connection client 27–32 ms, ten one-connection clients
24–25 ms (one request alone: 21 ms). Lending whole clients keeps each pool's work constant.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import httpx

__all__ = ["ClientPool"]


class ClientPool:
    """Up to ``size`` clients made by ``make`` (each with a one-connection pool), lent out
    one request at a time, the most recently used first (its connection is the likeliest
    to be alive); a request beyond ``size`` in flight waits for a client to come back.

    Only ever used on one event loop (the transport's).
    """

    def __init__(self, size: int, make: Callable[[], httpx.AsyncClient]) -> None:
        if size < 1:
            raise ValueError(f"size was {size!r}, expected >= 1")
        self.size = size
        self._make = make
        self._idle: list[httpx.AsyncClient] = []
        self._all: list[httpx.AsyncClient] = []
        self._slots = asyncio.Semaphore(size)
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def clients(self) -> tuple[httpx.AsyncClient, ...]:
        """Every client made so far (in order of creation)."""
        return tuple(self._all)

    def fill(self, count: int) -> None:
        """Make clients until ``min(count, size)`` exist (at start, not on a request's path)."""
        while len(self._all) < min(count, self.size):
            self._idle.append(self._new())

    def _new(self) -> httpx.AsyncClient:
        client = self._make()
        self._all.append(client)
        return client

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[httpx.AsyncClient]:
        """A client for one request, returned to the pool afterwards — unless the request
        was cut short (cancelled or timed out): that client is closed and replaced."""
        async with self._slots:
            client = self._idle.pop() if self._idle else self._new()
            try:
                yield client
            except (asyncio.CancelledError, TimeoutError, httpx.TimeoutException):
                # A request cancelled twice (its own timeout, then the batch deadline) can
                # leave httpcore's one-connection pool believing its connection is still
                # busy: every later request on that client then waits until it times out
                # (seen in bench_rl: 6 of 10 clients stuck after one timed-out decision).
                self._discard(client)
                raise
            self._idle.append(client)

    def _discard(self, client: httpx.AsyncClient) -> None:
        self._all.remove(client)
        closing = asyncio.get_running_loop().create_task(client.aclose())
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        """Close every client (the pool is empty afterwards)."""
        clients, self._all, self._idle = self._all, [], []
        await asyncio.gather(*self._closing, return_exceptions=True)
        for client in clients:
            await client.aclose()
