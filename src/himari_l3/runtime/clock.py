"""The service's clock: the injected clock, with ``time_ns`` pinnable to a request's
journaled timestamp (so every timestamp a request leaves in the learned state is the
journaled one, live and on replay alike)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .._clock import Clock

__all__ = ["PinnedClock"]


class PinnedClock:
    """Delegates to ``base``, except that ``time_ns`` can be pinned to a timestamp."""

    def __init__(self, base: Clock) -> None:
        self.base = base
        self._pinned: int | None = None

    def monotonic(self) -> float:
        return self.base.monotonic()

    def time_ns(self) -> int:
        return self._pinned if self._pinned is not None else self.base.time_ns()

    @contextlib.contextmanager
    def pinned(self, ts_ns: int) -> Iterator[None]:
        prev, self._pinned = self._pinned, ts_ns
        try:
            yield
        finally:
            self._pinned = prev
