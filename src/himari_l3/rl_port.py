"""The RL model port: what Layer 3 needs from any model transport, and nothing more.

A transport (HTTP today, the seeded mock, a gRPC client tomorrow) implements `RLModel`:
answer a list of signals within a deadline, each answer an `RLPrediction` or an `RLFailure`
saying why not, in input order. A transport knows nothing of the circuit breaker, the
statistics, the confidence floor or the replay tape: `rl_guard.GuardedModel` does all of that
once, around any transport (httpx's ``BaseTransport`` is the model for the cut). A third
transport is one module implementing this protocol, wired in ``bootstrap.build_rl_model``.

Both an async and a blocking method are part of the port: the engines have a sync and an
async API, and a transport knows best how to block (the HTTP transport hops onto its own event
loop, the mock just computes).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from .contracts import RLPrediction, TacticalSignal

__all__ = [
    "FAILURE_REASONS",
    "RLFailure",
    "RLModel",
    "RLResult",
    "gather_groups_with_deadline",
    "gather_with_deadline",
]

FAILURE_REASONS: Final = frozenset({"timeout", "connection_error", "http_error",
                                    "invalid_response", "oversize", "slow", "circuit_open",
                                    "low_confidence"})


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


class RLModel(Protocol):
    """A model transport. Answers must come back in input order, one per signal, within
    ``deadline_sec`` (a late answer is the transport's ``RLFailure("timeout")``). Transport
    problems are `RLFailure` values (``timeout``, ``connection_error``, ``http_error``,
    ``invalid_response``, ``oversize``), never exceptions; a caller input error
    (``market_data`` that is not JSON) raises ``ValidationError`` before anything is sent."""

    @property
    def endpoint(self) -> str:
        """A label for logs and state (a URL, ``mock://rl``...)."""
        ...

    async def predict_many(self, signals: Sequence[TacticalSignal],
                           market_data: dict[str, Any] | None,
                           deadline_sec: float) -> list[RLResult]:
        """Answers for ``signals`` within ``deadline_sec`` (awaitable from any loop)."""
        ...

    def predict_many_blocking(self, signals: Sequence[TacticalSignal],
                              market_data: dict[str, Any] | None,
                              deadline_sec: float) -> list[RLResult]:
        """The same, blocking; safe from any thread, including one running an event loop."""
        ...

    def warm_up(self, timeout_sec: float) -> None:
        """Get ready to answer at once (open connections, learn what the model offers),
        returning within about ``timeout_sec`` whether the model answers, refuses or hangs;
        never raises. Called when the guard is built, so no decision pays for it."""
        ...

    def close(self) -> None:
        """Release connections and threads (idempotent; the model stays usable)."""
        ...


async def gather_with_deadline(
    signals: Sequence[TacticalSignal],
    coros: Sequence[Coroutine[Any, Any, RLResult]],
    total_deadline_sec: float,
) -> list[RLResult]:
    """Run ``coros`` (one per signal) concurrently; any still running at the deadline is
    cancelled and becomes ``RLFailure(reason="timeout")``. For transports that fan out."""
    return await gather_groups_with_deadline([[s] for s in signals],
                                             [_as_list(c) for c in coros], total_deadline_sec)


async def _as_list(coro: Coroutine[Any, Any, RLResult]) -> list[RLResult]:
    return [await coro]


async def gather_groups_with_deadline(
    groups: Sequence[Sequence[TacticalSignal]],
    coros: Sequence[Coroutine[Any, Any, list[RLResult]]],
    total_deadline_sec: float,
) -> list[RLResult]:
    """Run ``coros`` (one per group of signals, each answering its whole group in order)
    concurrently; a group still running at the deadline is cancelled and each of its signals
    becomes ``RLFailure(reason="timeout")``. The answers, flattened in group order."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    if not tasks:
        return []
    try:
        bound = None if math.isinf(total_deadline_sec) else max(total_deadline_sec, 0.0)
        await asyncio.wait(tasks, timeout=bound)
    finally:
        pending = [t for t in tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    out: list[RLResult] = []
    for group, task in zip(groups, tasks, strict=True):
        if task.cancelled():
            out.extend(RLFailure(s.symbol, s.strategy_id, "timeout",
                                 f"still running at the {total_deadline_sec:g}s total deadline")
                       for s in group)
            continue
        answers = task.result()
        if len(answers) != len(group):
            raise RuntimeError(f"a transport answered {len(answers)} results for a group of "
                               f"{len(group)} signals")
        out.extend(answers)
    return out
