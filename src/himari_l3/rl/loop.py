"""An event loop of its own, on a daemon thread, for a transport whose I/O objects are bound
to the loop that created them (an httpx connection pool is).

The async API (awaited from any loop) and the blocking one (called from any thread,
including one running its own loop) both hop onto this loop instead of opening a second
pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

__all__ = ["SYNC_GRACE_SEC", "LoopThread"]

T = TypeVar("T")

# How long a blocking caller waits beyond the call's own deadline before giving up on the loop
# thread itself (it only matters if that thread is wedged; the coroutine is already bounded).
SYNC_GRACE_SEC: Final = 5.0


class LoopThread:
    """Owns one event loop running on a daemon thread (started by `ensure`, stopped by
    `stop`; `ensure` after `stop` starts a fresh one).

    ``owner`` is only referenced weakly: an owner that is garbage-collected without
    `stop` still stops the loop (a finalizer).
    """

    def __init__(self, name: str, owner: object) -> None:
        self._name = name
        self._owner = weakref.ref(owner)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The running loop (None before `ensure` and after `stop`)."""
        return self._loop

    def ensure(self) -> asyncio.AbstractEventLoop:
        """The loop, started if it is not running."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                started = threading.Event()
                thread = threading.Thread(target=_run_loop, args=(loop, started), daemon=True,
                                          name=self._name)
                thread.start()
                started.wait(SYNC_GRACE_SEC)
                self._loop, self._thread = loop, thread
                owner = self._owner()
                if owner is not None:
                    weakref.finalize(owner, _stop_loop, loop)
            return self._loop

    def in_loop_thread(self) -> bool:
        """True when called from the loop's own thread."""
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; its future."""
        return asyncio.run_coroutine_threadsafe(coro, self.ensure())

    async def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the loop from any loop (cancelling the caller cancels it)."""
        loop = self.ensure()
        if asyncio.get_running_loop() is loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    def run_blocking(self, coro: Coroutine[Any, Any, T], bound_sec: float) -> T:
        """Run ``coro`` on the loop and wait for it (``bound_sec`` plus a grace period)."""
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError(f"a blocking call from {self._name}'s own loop thread")
        future = self.submit(coro)
        try:
            return future.result(timeout=bound_sec + SYNC_GRACE_SEC)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"{self._name} did not answer within {bound_sec:g}s "
                               f"+ {SYNC_GRACE_SEC:g}s grace") from None

    def stop(self, shutdown: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``shutdown()`` on the loop (bounded), then stop the loop and join its thread
        (idempotent)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        if threading.current_thread() is thread:
            raise RuntimeError(f"stop() called from {self._name}'s own loop thread")
        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(SYNC_GRACE_SEC)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(SYNC_GRACE_SEC)
            if not thread.is_alive():
                loop.close()


def _stop_loop(loop: asyncio.AbstractEventLoop) -> None:
    # weakref finalizer: stop the loop thread of an owner that was never closed.
    if not loop.is_closed():
        loop.call_soon_threadsafe(loop.stop)


def _run_loop(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
    # Module-level (not a method) so the thread holds no reference to the owner, which can
    # then still be garbage-collected (its finalizer stops this loop).
    asyncio.set_event_loop(loop)
    loop.call_soon(started.set)
    loop.run_forever()
