"""The trading-state vocabulary: the three states, what a halt does, why a state changed,
and the event every change emits.

::

    ACTIVE ──(a loss or drawdown reaches reduce_at_fraction of its limit, stale data)──▶ REDUCING
    ACTIVE / REDUCING ──(daily loss or drawdown limit, cascade EXIT on a symbol)──▶ HALTED
    any ──(operator command)──▶ the state the operator asked for
    REDUCING / HALTED ──(cool-down elapsed and the trigger no longer holds; fresh data)──▶ lower

A state orders by severity (``code``: 0 ACTIVE, 1 REDUCING, 2 HALTED, the gauge's values);
a symbol trades under the more severe of its own state and its portfolio's.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

__all__ = ["HaltAction", "TradingState", "TradingStateChanged", "TransitionReason", "most_severe"]


class TradingState(enum.StrEnum):
    """May this portfolio (or symbol) add exposure? ``code`` orders them by severity."""

    ACTIVE = "ACTIVE"  # every intent allowed
    REDUCING = "REDUCING"  # only intents that reduce exposure
    HALTED = "HALTED"  # flatten (reduce-only intents to zero) or freeze (no intents)

    @property
    def code(self) -> int:
        """0 ACTIVE, 1 REDUCING, 2 HALTED (the ``himari_l3_trading_state`` gauge)."""
        return _CODE[self]

    @classmethod
    def _missing_(cls, value: object) -> TradingState | None:
        if isinstance(value, str):
            return cls.__members__.get(value.strip().upper())
        return None


_CODE = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


def most_severe(a: TradingState, b: TradingState) -> TradingState:
    """The more severe of two states (``a`` on a tie)."""
    return b if _CODE[b] > _CODE[a] else a


class HaltAction(enum.StrEnum):
    """What HALTED does to open exposure (config ``trading_state.halt_action``)."""

    FLATTEN = "flatten"  # close every position with reduce-only intents
    FREEZE = "freeze"  # cancel open intents, emit none: positions stay as they are


class TransitionReason(enum.StrEnum):
    """Why a state changed (a bounded metric label; the event's ``detail`` has the numbers)."""

    START = "start"  # the state a machine starts (or is announced) in
    DAILY_LOSS = "daily_loss"
    DRAWDOWN = "drawdown"
    STALE_DATA = "stale_data"
    FRESH_DATA = "fresh_data"  # the data of a stale symbol is fresh again
    CASCADE_EXIT = "cascade_exit"
    MANUAL = "manual"  # an operator command (kill switch, resume)
    COOLDOWN = "cooldown"  # the cool-down after an automatic trip elapsed
    RESTORED = "restored"  # state brought back from a snapshot


class TradingStateChanged(NamedTuple):
    """A portfolio's (``symbol`` None) or a symbol's trading state changed.

    ``old == new`` only for an announcement (``reason`` START or RESTORED: the gauge learns
    the current state); every other event is a transition. ``timestamp_ns`` is the
    injected clock's wall time (the journaled request time in the service).
    """

    portfolio: str
    symbol: str | None
    old: TradingState
    new: TradingState
    reason: TransitionReason
    detail: str
    timestamp_ns: int

    @property
    def is_transition(self) -> bool:
        """False for an announcement of the current state."""
        return self.old is not self.new
