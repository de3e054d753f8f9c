r"""The trading-state machine of one portfolio and its symbols: a pure, thread-safe state
machine with an injected clock, typed events out and an exact export/restore.

Each scope (the portfolio, and every symbol that has had something to say) is in the most
severe of three components:

* **operator** — what the last operator command set (``command``); never expires;
* **trip** — the latched automatic trigger: the daily loss or the drawdown (portfolio),
  a cascade EXIT (symbol). It holds until an operator command, or, with
  ``cooldown_sec`` configured, until the cool-down has elapsed *and* the trigger no longer
  holds (re-judged at that moment: a loss still beyond its limit keeps the trip);
* **stale** — a condition, not a latch (symbols): the latest decision for the symbol used a
  signal or a price older than ``stale_after_sec``; the next one with fresh data clears it.

A symbol trades under the more severe of its own state and the portfolio's (`effective`).

Triggers (fractions of equity; *E* is the equity observed now):

* daily loss :math:`\ell = 1 - E / E_{sod}`, where :math:`E_{sod}` is the equity last
  observed before the current day began (days start at ``day_start_utc``, UTC; the first
  observation ever opens the first day) — conservative: a loss made between the last mark of
  a day and the first of the next counts in the new day;
* drawdown :math:`d = 1 - E / E_{peak}`, :math:`E_{peak}` the highest equity observed;
* :math:`\ell \ge` ``daily_loss_limit_pct`` or :math:`d \ge` ``max_drawdown_pct`` → HALTED;
  either at ``reduce_at_fraction`` of its limit or more → REDUCING (1.0: no REDUCING stage);
  equity ≤ 0 → HALTED.

An operator command re-bases both references to the current equity (:math:`E_{sod} =
E_{peak} = E`): the operator accepted the loss so far, and the limits measure new losses from
there. A cool-down resume does not re-base (so an unattended process cannot lose the daily
limit once per cool-down).

Every change emits a `TradingStateChanged` through the observer port, under the machine's
lock (observers must be quick and must not call back into the machine). All times are the
injected clock's ``time_ns`` — in the service the journaled request time — so a replay of
the same inputs reproduces every transition.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, SupportsFloat

from .._clock import SYSTEM_CLOCK, Clock
from .._exceptions import StateRestoreError, ValidationError
from ..config.schema import TradingStateConfig
from ..observers import NULL_OBSERVER, Observer
from .states import (
    HaltAction,
    TradingState,
    TradingStateChanged,
    TransitionReason,
    most_severe,
)

__all__ = ["TradingBrief", "TradingStateMachine", "day_index"]

_ACTIVE, _REDUCING, _HALTED = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED
_R = TransitionReason
_DAY_NS = 86_400 * 1_000_000_000
_EXPORT_VERSION = 1
_MAX_REASON = 200


def day_index(ts_ns: int, day_start_utc: str) -> int:
    """The trading day of ``ts_ns``: whole days since the epoch, days starting at
    ``day_start_utc`` ("HH:MM", UTC)."""
    hours, minutes = day_start_utc.split(":")
    return (ts_ns - (int(hours) * 3600 + int(minutes) * 60) * 1_000_000_000) // _DAY_NS


class TradingBrief(NamedTuple):
    """A portfolio's trading state as a decision reports it: its state, why and since
    when, and every symbol whose own state is not ACTIVE."""

    state: TradingState
    reason: TransitionReason
    detail: str
    since_ns: int
    symbols: tuple[tuple[str, TradingState], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state.value, "reason": self.reason.value,
                "detail": self.detail, "since": _iso(self.since_ns),
                "since_ns": self.since_ns, "symbols": {s: st.value for s, st in self.symbols}}


@dataclass(slots=True)
class _Scope:
    """One scope's components and its current state (see the module docstring)."""

    state: TradingState = _ACTIVE
    reason: TransitionReason = _R.START
    detail: str = ""
    since_ns: int = 0
    operator: TradingState = _ACTIVE
    operator_detail: str = ""
    trip: TradingState = _ACTIVE
    trip_reason: TransitionReason = _R.START
    trip_detail: str = ""
    trip_at_ns: int = 0
    stale: bool = False
    stale_detail: str = ""
    cascade_exit: bool = False  # the latest cascade reading was EXIT

    def level(self) -> tuple[TradingState, TransitionReason, str]:
        """The most severe component (operator, then trip, then stale on a tie)."""
        out = (self.operator, _R.MANUAL, self.operator_detail)
        if self.trip.code > out[0].code:
            out = (self.trip, self.trip_reason, self.trip_detail)
        if self.stale and _REDUCING.code > out[0].code:
            out = (_REDUCING, _R.STALE_DATA, self.stale_detail)
        return out

    def clean(self) -> bool:
        """Nothing to remember: ACTIVE with no component set (the scope can be dropped)."""
        return (self.state is _ACTIVE and self.operator is _ACTIVE and self.trip is _ACTIVE
                and not self.stale and not self.cascade_exit)

    def export(self) -> dict[str, Any]:
        return {"state": self.state.value, "reason": self.reason.value, "detail": self.detail,
                "since_ns": self.since_ns, "operator": self.operator.value,
                "operator_detail": self.operator_detail, "trip": self.trip.value,
                "trip_reason": self.trip_reason.value, "trip_detail": self.trip_detail,
                "trip_at_ns": self.trip_at_ns, "stale": self.stale,
                "stale_detail": self.stale_detail, "cascade_exit": self.cascade_exit}

    @classmethod
    def restore(cls, d: dict[str, Any]) -> _Scope:
        return cls(TradingState(d["state"]), _R(d["reason"]), str(d["detail"]),
                   int(d["since_ns"]), TradingState(d["operator"]), str(d["operator_detail"]),
                   TradingState(d["trip"]), _R(d["trip_reason"]), str(d["trip_detail"]),
                   int(d["trip_at_ns"]), bool(d["stale"]), str(d["stale_detail"]),
                   bool(d["cascade_exit"]))


class TradingStateMachine:
    """ACTIVE → REDUCING → HALTED for one portfolio and its symbols (module docstring).

    Parameters
    ----------
    config : the triggers and what a halt does (``trading_state`` config section).
    portfolio : the portfolio's name (in events and metrics).
    clock : time source; only ``time_ns`` is read (days are UTC wall-clock days).
    observer : receives every `TradingStateChanged`.
    """

    def __init__(self, config: TradingStateConfig | None = None, *, portfolio: str = "default",
                 clock: Clock | None = None, observer: Observer | None = None) -> None:
        self.config = config if config is not None else TradingStateConfig()
        self.portfolio = portfolio
        self._clock = clock if clock is not None else SYSTEM_CLOCK
        self.observer = observer if observer is not None else NULL_OBSERVER
        self._lock = threading.RLock()
        self._book = _Scope(since_ns=self._clock.time_ns())
        self._symbols: dict[str, _Scope] = {}
        self._day: int | None = None
        self._equity: float | None = None  # the latest observed equity
        self._sod: float | None = None  # start-of-day equity (re-based by an operator)
        self._peak: float | None = None  # highest equity (re-based by an operator)
        self._derive()

    def _derive(self) -> None:
        """Numbers the hot path needs from the config (the day's offset, the equity
        fractions at which a loss or a drawdown starts to matter)."""
        cfg = self.config
        hours, minutes = cfg.day_start_utc.split(":")
        self._day_offset_ns = (int(hours) * 3600 + int(minutes) * 60) * 1_000_000_000
        self._calm_sod = 1.0 - cfg.reduce_at_fraction * cfg.daily_loss_limit_pct
        self._calm_peak = 1.0 - cfg.reduce_at_fraction * cfg.max_drawdown_pct

    # ------------------------------------------------------------------ queries
    @property
    def halt_action(self) -> HaltAction:
        """What HALTED does (flatten or freeze)."""
        return HaltAction(self.config.halt_action)

    @property
    def state(self) -> TradingState:
        """The portfolio's own state."""
        return self._book.state

    def symbol_state(self, symbol: str) -> TradingState:
        """``symbol``'s own state (ACTIVE if nothing was said about it)."""
        scope = self._symbols.get(symbol)
        return _ACTIVE if scope is None else scope.state

    def all_active(self) -> bool:
        """True when the portfolio and every symbol trade freely (a cheap check first: the
        hot path of every rebalance)."""
        if self._book.state is not _ACTIVE:
            return False
        return not self._symbols or all(sc.state is _ACTIVE
                                        for sc in list(self._symbols.values()))

    def since_ns(self, symbol: str | None = None) -> int:
        """When the portfolio (or ``symbol``) entered its current state."""
        scope = self._book if symbol is None else self._symbols.get(symbol)
        return self._book.since_ns if scope is None else scope.since_ns

    def effective(self, symbol: str) -> TradingState:
        """The state ``symbol`` trades under: the more severe of its own and the portfolio's."""
        return most_severe(self._book.state, self.symbol_state(symbol))

    def not_active(self) -> dict[str, TradingState]:
        """Symbols whose own state is not ACTIVE (sorted)."""
        with self._lock:
            return {s: sc.state for s, sc in sorted(self._symbols.items())
                    if sc.state is not _ACTIVE}

    def brief(self) -> TradingBrief:
        """The portfolio's state, reason, since, and the symbols not ACTIVE (cheap)."""
        b = self._book
        symbols = (() if not self._symbols else tuple(
            (s, sc.state) for s, sc in sorted(self._symbols.items())
            if sc.state is not _ACTIVE))
        return TradingBrief(b.state, b.reason, b.detail, b.since_ns, symbols)

    def status(self) -> dict[str, Any]:
        """A JSON-ready view: the portfolio's state, reason and since, every symbol with a
        state of its own, and the trigger levels (``GET /v1/trading-state``)."""
        with self._lock:
            b = self._book
            symbols = {s: sc for s, sc in sorted(self._symbols.items())
                       if sc.state is not _ACTIVE}
            return {
                "portfolio": self.portfolio, "state": b.state.value, "reason": b.reason.value,
                "detail": b.detail, "since": _iso(b.since_ns), "since_ns": b.since_ns,
                "symbols": {s: sc.state.value for s, sc in symbols.items()},
                "symbol_details": {s: {"state": sc.state.value, "reason": sc.reason.value,
                                       "detail": sc.detail, "since": _iso(sc.since_ns)}
                                   for s, sc in symbols.items()},
                "halt_action": self.config.halt_action,
                "equity": self._equity, "start_of_day_equity": self._sod,
                "peak_equity": self._peak, "daily_loss_pct": self._loss(),
                "drawdown_pct": self._drawdown(),
                "limits": {"daily_loss_limit_pct": self.config.daily_loss_limit_pct,
                           "max_drawdown_pct": self.config.max_drawdown_pct,
                           "reduce_at_fraction": self.config.reduce_at_fraction,
                           "stale_after_sec": self.config.stale_after_sec,
                           "cooldown_sec": self.config.cooldown_sec,
                           "day_start_utc": self.config.day_start_utc},
            }

    # ------------------------------------------------------------------- inputs
    def observe_equity(self, value: SupportsFloat) -> TradingState:
        """Mark the portfolio's equity now: rolls the day, moves the peak, judges the daily
        loss and the drawdown, expires cool-downs. Returns the portfolio's state."""
        # SupportsFloat, not float: a compiled build checks a float argument itself (and
        # would take True as 1.0) before the named error below could be raised.
        if type(value) is float and value - value == 0.0:  # the cheap common check
            equity = value
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or (
                not math.isfinite(value)):
            raise ValidationError("equity", value, "a finite number")
        else:
            equity = float(value)
        with self._lock:
            now = self._clock.time_ns()
            day = (now - self._day_offset_ns) // _DAY_NS
            if self._day != day:
                # Start of day: the equity last observed before the boundary (or this one).
                self._sod = self._equity if self._equity is not None else equity
                self._day = day
            self._equity = equity
            peak = self._peak
            if peak is None or equity > peak:
                self._peak = peak = equity
            b = self._book
            sod = self._sod
            assert sod is not None
            # Calm (the common case): above both REDUCING thresholds, nothing to judge.
            if (equity <= sod * self._calm_sod or equity <= peak * self._calm_peak
                    or sod <= 0.0):
                level, reason, detail = self._loss_level()
                if level.code > b.trip.code:
                    b.trip, b.trip_reason, b.trip_detail = level, reason, detail
                    b.trip_at_ns = now
            cause = (None if self.config.cooldown_sec is None
                     else self._expire_locked(now))
            if b.trip is not b.state or cause is not None:
                self._settle(None, b, now, cause)
            return b.state

    def observe_data(self, symbol: str, *, signal_ns: int | None = None,
                     price_ns: int | None = None) -> TradingState:
        """A decision for ``symbol`` used a signal stamped ``signal_ns`` (the oldest, if
        several) and a price stamped ``price_ns``: older than ``stale_after_sec`` → the
        symbol is REDUCING until a decision with fresh data. Returns its effective state."""
        with self._lock:
            now = self._clock.time_ns()
            limit_ns = round(self.config.stale_after_sec * 1e9)
            old = [(kind, (now - ts) / 1e9) for kind, ts in (("signal", signal_ns),
                                                              ("price", price_ns))
                   if ts is not None and now - ts > limit_ns]
            scope = self._symbols.get(symbol)
            if scope is None:
                if not old:
                    return self._book.state
                scope = self._symbols[symbol] = _Scope(since_ns=now)
            was = scope.stale
            scope.stale = bool(old)
            scope.stale_detail = "; ".join(
                f"{kind} {age:.3f} s old > stale_after_sec {self.config.stale_after_sec:g}"
                for kind, age in old)
            self._settle(symbol, scope, now, (_R.FRESH_DATA, "data fresh again")
                         if was and not old else None)
            return most_severe(self._book.state, scope.state)

    def observe_cascade(self, symbol: str, exit_recommended: bool) -> TradingState:
        """The latest cascade reading for ``symbol``: EXIT halts the symbol (latched).
        Returns its effective state."""
        with self._lock:
            now = self._clock.time_ns()
            scope = self._symbols.get(symbol)
            if scope is None:
                if not exit_recommended:
                    return self._book.state
                scope = self._symbols[symbol] = _Scope(since_ns=now)
            scope.cascade_exit = bool(exit_recommended)
            if exit_recommended and scope.trip is not _HALTED:
                scope.trip, scope.trip_reason = _HALTED, _R.CASCADE_EXIT
                scope.trip_detail, scope.trip_at_ns = "cascade risk recommended EXIT", now
            self._expire_scope(symbol, scope, now)
            self._settle(symbol, scope, now)
            return most_severe(self._book.state, scope.state)

    def command(self, state: TradingState | str, reason: str,
                symbol: str | None = None) -> TradingState:
        """An operator sets the portfolio's (or ``symbol``'s) state: the kill switch
        (HALTED), reduce-only (REDUCING) or a resume (ACTIVE). Clears the scope's automatic
        trip; on the portfolio, re-bases the daily-loss and drawdown references to the
        current equity. Returns the scope's state (a stale symbol stays REDUCING)."""
        target = _parse_state(state)
        text = _reason_text(reason)
        with self._lock:
            now = self._clock.time_ns()
            if symbol is None:
                scope = self._book
                if self._equity is not None:
                    self._sod = self._peak = self._equity
            else:
                scope = self._symbols.setdefault(symbol, _Scope(since_ns=now))
            scope.operator, scope.operator_detail = target, f"operator: {text}"
            scope.trip, scope.trip_reason, scope.trip_detail = _ACTIVE, _R.START, ""
            self._settle(symbol, scope, now, (_R.MANUAL, f"operator: {text}"))
            return scope.state

    def tick(self) -> None:
        """Expire the cool-downs that are due (call it with the clock moved on)."""
        with self._lock:
            now = self._clock.time_ns()
            self._settle(None, self._book, now, self._expire_locked(now))

    def reconfigure(self, config: TradingStateConfig) -> None:
        """New triggers and halt action (config hot reload); states and references kept.
        The new limits are judged at the next observation."""
        with self._lock:
            self.config = config
            self._derive()

    def announce(self) -> None:
        """Emit the current state of the portfolio and of every symbol with a state of its
        own (``old == new``): how gauges learn the state after a start or a restore."""
        with self._lock:
            now = self._clock.time_ns()
            b = self._book
            self._emit(None, b.state, b.state, _R.START, b.detail, now)
            for s, sc in sorted(self._symbols.items()):
                self._emit(s, sc.state, sc.state, _R.START, sc.detail, now)

    # ------------------------------------------------------------------ internals
    def _loss(self) -> float | None:
        if self._equity is None or self._sod is None:
            return None
        return 1.0 - self._equity / self._sod if self._sod > 0 else 1.0

    def _drawdown(self) -> float | None:
        if self._equity is None or self._peak is None:
            return None
        return 1.0 - self._equity / self._peak if self._peak > 0 else 1.0

    def _loss_level(self) -> tuple[TradingState, TransitionReason, str]:
        """The state the daily loss and the drawdown call for now (daily loss first on a
        tie)."""
        cfg = self.config
        out: tuple[TradingState, TransitionReason, str] = (_ACTIVE, _R.START, "")
        equity = self._equity
        if equity is not None and equity <= 0.0:
            return _HALTED, _R.DRAWDOWN, f"equity {equity:,.2f} <= 0"
        for reason, value, limit, ref_name, ref in (
                (_R.DAILY_LOSS, self._loss(), cfg.daily_loss_limit_pct, "start-of-day",
                 self._sod),
                (_R.DRAWDOWN, self._drawdown(), cfg.max_drawdown_pct, "peak", self._peak)):
            if value is None:
                continue
            if value >= limit:
                level = _HALTED
            elif value >= cfg.reduce_at_fraction * limit:
                level = _REDUCING
            else:
                continue
            if level.code > out[0].code:
                bound = "limit" if level is _HALTED else (
                    f"{cfg.reduce_at_fraction:g} x limit")
                out = (level, reason, f"{reason.value.replace('_', ' ')} {value:.4%} of "
                       f"{ref_name} equity {ref:,.2f} >= {bound} {limit:.4%}")
        return out

    def _expire_locked(self, now: int) -> tuple[TransitionReason, str] | None:
        """Expire the symbols' due cool-downs, then the portfolio's: its trip falls to what
        the triggers call for now. Returns the portfolio's cause, if its cool-down ran."""
        for symbol, scope in list(self._symbols.items()):
            self._expire_scope(symbol, scope, now)
        b = self._book
        cooldown = self.config.cooldown_sec
        if cooldown is None or b.trip is _ACTIVE or now - b.trip_at_ns < round(cooldown * 1e9):
            return None
        b.trip, b.trip_reason, b.trip_detail = self._loss_level()
        b.trip_at_ns = now
        return _R.COOLDOWN, f"cool-down of {cooldown:g} s elapsed"

    def _expire_scope(self, symbol: str, scope: _Scope, now: int) -> None:
        cooldown = self.config.cooldown_sec
        if cooldown is None or scope.trip is _ACTIVE or scope.cascade_exit or (
                now - scope.trip_at_ns < round(cooldown * 1e9)):
            return
        scope.trip, scope.trip_reason, scope.trip_detail = _ACTIVE, _R.START, ""
        self._settle(symbol, scope, now, (_R.COOLDOWN, f"cool-down of {cooldown:g} s elapsed "
                                          "and the latest cascade reading is not EXIT"))

    def _settle(self, symbol: str | None, scope: _Scope, now: int,
                cause: tuple[TransitionReason, str] | None = None) -> None:
        """Move ``scope`` to its level; emit the transition. Escalations are reported with
        the trigger's reason, de-escalations with their ``cause`` (cool-down, fresh data,
        operator)."""
        new, reason, detail = scope.level()
        old = scope.state
        if new is old:
            if cause is not None and cause[0] is _R.MANUAL and reason is _R.MANUAL:
                scope.reason, scope.detail = reason, detail  # a repeated command's new text
            if symbol is not None and scope.clean():
                self._symbols.pop(symbol, None)
            return
        if cause is not None and (new.code < old.code or cause[0] is _R.MANUAL):
            reason, detail = cause[0], (cause[1] if new is _ACTIVE or reason is _R.MANUAL
                                        else f"{cause[1]}; {detail}")
        scope.state, scope.reason, scope.detail, scope.since_ns = new, reason, detail, now
        self._emit(symbol, old, new, reason, detail, now)
        if symbol is not None and scope.clean():
            self._symbols.pop(symbol, None)

    def _emit(self, symbol: str | None, old: TradingState, new: TradingState,
              reason: TransitionReason, detail: str, now: int) -> None:
        self.observer.emit(TradingStateChanged(self.portfolio, symbol, old, new, reason,
                                               detail, now))

    # ---------------------------------------------------------------- persistence
    def export_state(self) -> dict[str, Any]:
        """Everything needed to continue exactly (absolute wall-clock stamps)."""
        with self._lock:
            return {"version": _EXPORT_VERSION, "portfolio": self.portfolio,
                    "day": self._day, "equity": self._equity, "start_of_day_equity": self._sod,
                    "peak_equity": self._peak, "book": self._book.export(),
                    "symbols": {s: sc.export() for s, sc in sorted(self._symbols.items())}}

    def restore_state(self, data: dict[str, Any]) -> None:
        """Restore `export_state` output (then `announce` tells the observers). Raises
        `StateRestoreError` on malformed input, changing nothing."""
        try:
            if data["version"] != _EXPORT_VERSION:
                raise ValueError(f"version {data['version']!r} != {_EXPORT_VERSION}")
            book = _Scope.restore(data["book"])
            symbols = {str(s): _Scope.restore(d) for s, d in data["symbols"].items()}
            refs = [_opt_float(data[k]) for k in ("equity", "start_of_day_equity",
                                                  "peak_equity")]
            day = None if data["day"] is None else int(data["day"])
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise StateRestoreError(f"trading state {self.portfolio!r}: cannot restore: "
                                    f"{err!r}") from None
        with self._lock:
            self._book, self._symbols, self._day = book, symbols, day
            self._equity, self._sod, self._peak = refs


def _opt_float(value: Any) -> float | None:
    if value is None:
        return None
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{value!r} is not finite")
    return out


def _parse_state(state: TradingState | str) -> TradingState:
    try:
        return TradingState(state)
    except ValueError:
        raise ValidationError("state", state, "one of ACTIVE, REDUCING, HALTED") from None


def _reason_text(reason: str) -> str:
    if not isinstance(reason, str) or not reason.strip() or len(reason) > _MAX_REASON:
        raise ValidationError("reason", reason,
                              f"a non-empty string of at most {_MAX_REASON} characters")
    if not reason.isprintable():
        raise ValidationError("reason", reason, "printable characters only")
    return reason.strip()


def _iso(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).isoformat(timespec="milliseconds")
