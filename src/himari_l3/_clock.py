"""Injectable clocks: the core never reads the wall clock directly."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """What the core needs to know about time."""

    def monotonic(self) -> float:
        """Seconds on a monotonic clock (for timeouts and windows)."""
        ...

    def time_ns(self) -> int:
        """Wall-clock time in nanoseconds since the epoch (for timestamps)."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time_ns(self) -> int:
        return time.time_ns()


class ManualClock:
    """A clock that only moves when told to: tests advance it instead of sleeping."""

    def __init__(self, start: float = 1_000.0, wall_ns: int = 1_700_000_000_000_000_000) -> None:
        self._now = float(start)
        self._wall_ns = int(wall_ns)

    def monotonic(self) -> float:
        return self._now

    def time_ns(self) -> int:
        return self._wall_ns + int(self._now * 1e9)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"seconds was {seconds!r}, expected >= 0")
        self._now += seconds


SYSTEM_CLOCK: Clock = SystemClock()
