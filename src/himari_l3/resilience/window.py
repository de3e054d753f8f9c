"""The breaker's memory of recent calls and the rule that opens it (pure, no locking).

`CallWindow` keeps ``(time, failed)`` for the latest calls, bounded both by count
(``max_calls``) and by age (``window_sec``); `OpeningRule` decides from its counts whether
the circuit opens: the seed's count rule while the window holds fewer than ``minimum_calls``
calls, the failure-rate rule from then on (see `CircuitBreaker` for why both).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["CallWindow", "OpeningRule"]


def positive(name: str, value: float) -> float:
    """``value`` as a float, or a ValueError naming ``name`` unless finite and > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        math.isfinite(value) and value > 0
    ):
        raise ValueError(f"{name} was {value!r}, expected a finite number > 0")
    return float(value)


def count(name: str, value: int) -> int:
    """``value``, or a ValueError naming ``name`` unless an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} was {value!r}, expected an int >= 1")
    return value


@dataclass(frozen=True, slots=True)
class OpeningRule:
    """When a closed breaker opens, from the window's N calls of which F failed.

    N < ``minimum_calls``: F ≥ ``failure_threshold`` (count rule). Otherwise
    F / N ≥ ``failure_rate_threshold`` (rate rule). Validated on construction:
    ``failure_threshold ≤ minimum_calls ≤ rate_window_calls``, else one of the rules could
    never fire.
    """

    failure_threshold: int = 5
    failure_rate_threshold: float = 0.5
    minimum_calls: int = 10
    rate_window_calls: int = 100

    def __post_init__(self) -> None:
        threshold = count("failure_threshold", self.failure_threshold)
        rate = positive("failure_rate_threshold", self.failure_rate_threshold)
        if rate > 1.0:
            raise ValueError(f"failure_rate_threshold was {rate!r}, expected 0 < x <= 1")
        minimum = count("minimum_calls", self.minimum_calls)
        if minimum < threshold:
            raise ValueError(f"minimum_calls was {minimum!r}, expected >= failure_threshold "
                             f"({threshold}): below minimum_calls calls the count rule "
                             "decides, and it could never reach the threshold")
        calls = count("rate_window_calls", self.rate_window_calls)
        if calls < minimum:
            raise ValueError(f"rate_window_calls was {calls!r}, expected >= minimum_calls "
                             f"({minimum}): the rate rule would never apply")
        object.__setattr__(self, "failure_rate_threshold", rate)

    def reason_to_open(self, calls: int, failures: int, window_sec: float) -> str | None:
        """Why ``failures`` of ``calls`` open the circuit, or None if they do not."""
        if calls < self.minimum_calls:
            if failures >= self.failure_threshold:
                return f"{failures} failures within {window_sec:g}s"
            return None
        if failures >= self.failure_rate_threshold * calls:
            return (f"{failures} of {calls} calls failed ({failures / calls:.0%} >= "
                    f"{self.failure_rate_threshold:.0%}) within {window_sec:g}s")
        return None


class CallWindow:
    """Outcomes of the latest ``max_calls`` calls, each kept at most ``window_sec`` seconds."""

    __slots__ = ("_calls", "failures", "window_sec")

    def __init__(self, max_calls: int, window_sec: float,
                 calls: Iterable[tuple[float, bool]] = ()) -> None:
        self.window_sec = window_sec
        self._calls: deque[tuple[float, bool]] = deque(calls, maxlen=max_calls)
        self.failures = sum(failed for _, failed in self._calls)

    def __len__(self) -> int:
        return len(self._calls)

    @property
    def max_calls(self) -> int:
        return self._calls.maxlen or 0

    def record(self, now: float, failed: bool) -> None:
        """Add a call's outcome (the oldest call leaves a full window), then `prune`."""
        calls = self._calls
        if len(calls) == calls.maxlen:
            self.failures -= calls[0][1]
        calls.append((now, failed))
        self.failures += failed
        self.prune(now)

    def prune(self, now: float) -> None:
        """Forget calls ``window_sec`` old or older."""
        calls = self._calls
        while calls and now - calls[0][0] >= self.window_sec:
            self.failures -= calls.popleft()[1]

    def clear(self) -> None:
        self._calls.clear()
        self.failures = 0

    def resized(self, max_calls: int) -> CallWindow:
        """The same window holding at most ``max_calls`` (the newest are kept)."""
        return CallWindow(max_calls, self.window_sec, self._calls)

    def export(self, now: float) -> list[list[Any]]:
        """``[[age_sec, failed], ...]``, oldest first (ages relative to ``now``)."""
        return [[now - t, failed] for t, failed in self._calls]

    @classmethod
    def restore(cls, max_calls: int, window_sec: float, now: float,
                data: Iterable[Any]) -> CallWindow:
        """Inverse of `export`; ValueError/TypeError on malformed input."""
        ages: list[tuple[float, bool]] = []
        for age, failed in data:
            if not isinstance(failed, bool):
                raise ValueError(f"window flag was {failed!r}, expected true or false")
            a = float(age)
            if not math.isfinite(a) or a < 0:
                raise ValueError(f"window age was {age!r}, expected a finite number >= 0")
            if ages and a > ages[-1][0]:
                raise ValueError("window ages are not oldest first")
            ages.append((a, failed))
        return cls(max_calls, window_sec, ((now - a, f) for a, f in ages))
