"""The execution desk: the book filling its own intents through an executor that executes by
itself (the paper executor, ``executors/paper.py``) — the one entry point a service, a live
loop or a backtest calls to close the loop.

* `sync` (after every change to the book): the executor drops the intents the book no longer
  has open (superseded, expired, filled elsewhere) and takes the ones issued since the last
  sync (their ``decision_id`` is above the desk's high-water mark);
* `observe` (at every price observation): the executor works its orders against the prices;
  its fills go to the book as fills (``fill_id`` ``paper:<request id>:<n>``, so a re-sent
  one is recognised), the trades they close teach the learners (``Layer3Book.apply_fills``),
  the rests it gave up are closed as cancelled, each portfolio touched is re-planned once,
  and the intents that re-plan issues are taken at once (they fill from the next
  observation on).

With ``recorded`` (a replay) the executor applies the fills it made the first time instead
of simulating them; everything else runs as live, so the book, the learners and the
executor end exactly where they were.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import StateRestoreError
from ..events import PaperFilled
from ..executor_port import Executor
from ..fills import SimFill
from .book import Book, BookStep, FillsResult
from .fills import Fill
from .intents import IntentCause

__all__ = ["ApplyFills", "DeskStep", "ExecutionDesk", "book_fill", "settle"]

# How the desk applies fills to the book: ``Book.apply_fills``, or ``Layer3Book.apply_fills``
# (which also teaches the engine's learners from the trades they close).
ApplyFills = Callable[[Sequence[Fill], int], FillsResult]

_EXPORT_VERSION = 1


@dataclass(frozen=True, slots=True)
class DeskStep:
    """One observation: the executor's fills (with their slippage and fees), the intents it
    cancelled, what the book did with the fills, and the re-plans of the portfolios that
    only had cancellations."""

    fills: tuple[SimFill, ...]
    cancelled: tuple[str, ...]
    fills_result: FillsResult | None
    replans: tuple[BookStep, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"fills": [f.to_dict() for f in self.fills],
                               "cancelled": list(self.cancelled)}
        if self.fills_result is not None:
            out["closed_trades"] = [t.to_dict() for t in self.fills_result.closed_trades]
        steps = [*(self.fills_result.steps if self.fills_result else ()), *self.replans]
        out["portfolios"] = {s.portfolio: s.to_dict() for s in steps}
        return out


def book_fill(f: SimFill, request_id: int, n: int) -> Fill:
    """The book's record of an executor's fill (``n``: its place in the observation)."""
    return Fill(f.symbol, f.side.value, f.quantity, f.price, f.client_order_id, f.fee,
                f.timestamp_ns, f"paper:{request_id}:{n}", n)


def settle(book: Book, apply_fills: ApplyFills, fills: Sequence[SimFill],
           cancelled: Sequence[str], request_id: int) -> DeskStep:
    """Apply an observation's fills and cancellations to the book: cancelled rests closed,
    fills applied (through ``apply_fills``: their closed trades teach the learners), each
    portfolio touched re-planned once. Also how journaled paper fills are replayed into a
    service that no longer runs the paper executor (they are facts)."""
    if not fills and not cancelled:
        return DeskStep((), (), None)
    closed = book.close_cancelled(cancelled)
    result = None
    if fills:
        result = apply_fills([book_fill(f, request_id, n) for n, f in enumerate(fills)],
                             request_id)
    filled = {s.portfolio for s in result.steps} if result is not None else set()
    replans = tuple(book.replan(p, request_id, IntentCause.CANCEL)
                    for p in closed if p not in filled)
    return DeskStep(tuple(fills), tuple(cancelled), result, replans)


class ExecutionDesk:
    """The book and an executor that fills its intents (module docstring)."""

    def __init__(self, book: Book, executor: Executor, *,
                 apply_fills: ApplyFills | None = None) -> None:
        """``apply_fills``: default ``book.apply_fills`` (the service passes
        ``Layer3Book.apply_fills``, so that closed trades teach its engine)."""
        self.book = book
        self.executor = executor
        self.apply_fills = apply_fills if apply_fills is not None else book.apply_fills
        self.high_water = 0  # the highest decision id whose intents the executor has

    def sync(self) -> None:
        """Cancel what the book no longer has open; submit what it issued since."""
        portfolios = self.book.portfolios
        working = self.executor.working()
        if not working and not any(pb.live for pb in portfolios.values()):
            return  # the common case: nothing open on either side
        open_ids = {s.intent.client_order_id for pb in portfolios.values()
                    for s in pb.open_intents()}
        gone = [cid for cid in working if cid not in open_ids]
        if gone:
            self.executor.cancel(gone)
        fresh = [s.intent for _, pb in sorted(portfolios.items()) for s in pb.open_intents()
                 if s.intent.decision_id > self.high_water]
        if fresh:
            self.executor.submit(fresh)
            self.high_water = max(i.decision_id for i in fresh)

    def observe(self, prices: Mapping[str, float], timestamp_ns: int, request_id: int, *,
                volumes: Mapping[str, float] | None = None,
                recorded: Sequence[SimFill] | None = None) -> DeskStep:
        """One price observation (module docstring); ``request_id`` stamps the re-plans'
        intents (unique per request, like any decision id)."""
        worked = self.executor.observe(prices, timestamp_ns, volumes=volumes,
                                       recorded=recorded)
        observer = self.book.observer
        for f in worked.fills:
            observer.emit(PaperFilled(f.side.value, f.notional, f.fee, f.slippage_bps,
                                      not f.done))
        # A fill that finished its order with a rest (IOC, FOK, a rest below one lot) gives
        # the rest up: the book closes that intent too.
        cancelled = [o.client_order_id for o, _ in worked.cancelled] + [
            f.client_order_id for f in worked.fills if f.done and f.remaining > 0.0]
        step = settle(self.book, self.apply_fills, worked.fills, cancelled, request_id)
        if worked.fills or cancelled:  # the re-plans may have issued intents
            self.sync()
        return step

    def export_state(self) -> dict[str, Any]:
        return {"version": _EXPORT_VERSION, "high_water": self.high_water,
                "executor": self.executor.export_state()}

    def restore_state(self, state: dict[str, Any]) -> None:
        try:
            if state["version"] != _EXPORT_VERSION:
                raise ValueError(f"version {state['version']!r} != {_EXPORT_VERSION}")
            high_water = int(state["high_water"])
            executor_state = state["executor"]
        except (KeyError, TypeError, ValueError) as err:
            raise StateRestoreError(f"execution desk: cannot restore: {err!r}") from None
        self.executor.restore_state(executor_state)
        self.high_water = high_water
