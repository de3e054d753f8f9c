"""What the book tells a portfolio's trading-state machine, and what the machine lets the
book do (the machine itself is ``himari_l3.trading``).

* every step marks the portfolio's equity (daily loss, drawdown, cool-downs) before the
  book plans its intents (`observe_step`);
* an allocation reports how old its data is per symbol — the oldest of the latest signal of
  each strategy (what Phase 2 keeps of a strategy's duplicates), and the price's stamp when
  the caller knows it (`observe_batch`) — and which symbols the cascade told to EXIT
  (`observe_exits`);
* the rebalance asks, per symbol, for the state it trades under (`Restrictions`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..contracts import EnsembleAllocation
from ..trading import HaltAction, TradingState, TradingStateMachine, most_severe

__all__ = ["Restrictions", "observe_batch", "observe_exits", "signal_times"]

_ACTIVE = TradingState.ACTIVE


def signal_times(signals: Sequence[Any]) -> dict[str, int]:
    """Per symbol, the oldest of its strategies' latest signal stamps (signals given as
    contracts or dicts; anything without a symbol, a strategy and an int stamp is skipped:
    Phase 2 rejects it on its own)."""
    latest: dict[tuple[str, str], int] = {}
    for s in signals:
        if isinstance(s, Mapping):
            strat, sym, ts = s.get("strategy_id"), s.get("symbol"), s.get("timestamp_ns")
        else:
            strat = getattr(s, "strategy_id", None)
            sym, ts = getattr(s, "symbol", None), getattr(s, "timestamp_ns", None)
        if isinstance(strat, str) and isinstance(sym, str) and isinstance(ts, int) and \
                not isinstance(ts, bool):
            key = (strat, sym)
            if ts > latest.get(key, -1):
                latest[key] = ts
    out: dict[str, int] = {}
    for (_, sym), ts in latest.items():
        if ts < out.get(sym, ts + 1):
            out[sym] = ts
    return out


def observe_batch(machine: TradingStateMachine, signals: Sequence[Any],
                  price_times: Mapping[str, int] | None) -> None:
    """Judge the age of the data an allocation uses (stale → the symbol is REDUCING)."""
    times = signal_times(signals)
    for sym in sorted(times.keys() | (price_times or {}).keys()):
        machine.observe_data(sym, signal_ns=times.get(sym),
                             price_ns=None if price_times is None else price_times.get(sym))


def observe_exits(machine: TradingStateMachine, allocation: EnsembleAllocation) -> None:
    """Each symbol of the batch: did the cascade recommend EXIT (the symbol halts)?"""
    exits = set((allocation.trace.get("book") or {}).get("cascade_exits", ()))
    for sym in sorted(allocation.allocations):
        machine.observe_cascade(sym, sym in exits)


class Restrictions:
    """The state each symbol trades under during one rebalance (the more severe of its own
    and the portfolio's), read once per step (only when something is restricted:
    ``TradingStateMachine.all_active`` is the cheap check before it)."""

    __slots__ = ("book_state", "halt_action", "own")

    def __init__(self, machine: TradingStateMachine) -> None:
        self.book_state = machine.state
        self.own = machine.not_active()
        self.halt_action: HaltAction = machine.halt_action

    def state(self, symbol: str) -> TradingState:
        return most_severe(self.book_state, self.own.get(symbol, _ACTIVE))
