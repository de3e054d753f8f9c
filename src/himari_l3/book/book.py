r"""The book: every portfolio's positions, standing targets and intents, and the rules that
keep all of them inside the limits (docs/execution.md).

**How a batch shares the budget with the standing targets.** An allocation names pairs
(strategy x symbol) through its signals:

* ``mode: incremental`` (the default): the standing targets of the pairs it does not name
  are **commitments** — they stay as they are, and every limit (per position, per strategy,
  gross, net, leverage) holds over commitments plus batch, the batch getting what the
  commitments leave (``portfolio/constraints.py``). A cascade EXIT on a symbol zeroes its
  commitments too;
* ``mode: full``: the batch is the whole portfolio; a pair it does not name goes to 0.

Before any batch (and after any other change) the standing targets alone are checked
against the limits at the current equity: targets that no longer fit — a limit lowered by a
reload, equity fallen — are scaled down to fit, and the batch then gets what is left.
Targets older than ``book.target_ttl_sec`` decay to 0: a stale signal holds no risk.
A signal that Phase 2 rejects takes its pair's target to 0 (the book keeps no risk on a pair
whose latest signal was unusable).

Each request is one step: refresh (expire intents, decay targets, repair targets), the
request's own change, the equity marked for the portfolio's trading state (``trading.py``:
daily loss, drawdown, cool-downs), then `rebalance.rebalance` issues the intents that take
the projected book to the targets — as far as the trading states allow — and checks every
limit on it. The same steps replayed in the same order
give the same state (the service journals each one). Equity, marks and limits are per
portfolio; the caps are fractions of the portfolio's marked equity.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from .._clock import SYSTEM_CLOCK, Clock
from .._exceptions import InvalidBookRequestException, StateRestoreError, ValidationError
from .._validate import nonempty_str
from ..config.schema import Layer3Config
from ..contracts import EnsembleAllocation
from ..events import (
    BookStepped,
    FillRecorded,
    IntentsCancelled,
    PositionsReconciled,
    TradeClosed,
)
from ..observers import NULL_OBSERVER, Observer
from ..portfolio.budgets import Contrib
from ..portfolio.constraints import PortfolioLimit, declared_limits, run_limits
from ..trading import TradingState, TradingStateMachine
from .fills import Fill, PositionsSnapshot
from .intents import IntentCause, IntentState, IntentStatus
from .markets import Markets
from .portfolio import PortfolioBook
from .positions import ClosedTrade
from .rebalance import rebalance
from .reports import (
    apply_fill,
    check_fills,
    check_snapshot,
    reconcile,
)
from .results import AllocationPlan, BookStep, FillsResult, ReconcileResult, targets_view
from .settings import LIMIT_HEADROOM, BookSettings
from .trading import observe_batch, observe_exits
from .views import book_marks, positions_view

__all__ = ["DEFAULT_PORTFOLIO", "AllocationPlan", "Book", "BookStep", "FillsResult",
           "ReconcileResult"]

log = logging.getLogger(__name__)

DEFAULT_PORTFOLIO = "default"
STATE_VERSION = 1


def _named_pairs(signals: Sequence[Any]) -> set[tuple[str, str]]:
    """The (strategy, symbol) pairs a batch's signals name (valid or not)."""
    out: set[tuple[str, str]] = set()
    for s in signals:
        strat, sym = getattr(s, "strategy_id", None), getattr(s, "symbol", None)
        if strat is None and isinstance(s, Mapping):  # a signal given as a dict
            strat, sym = s.get("strategy_id"), s.get("symbol")
        if isinstance(strat, str) and isinstance(sym, str):
            out.add((strat, sym))
    return out


class Book:
    """All portfolios' books (see the module docstring). Built from a `Layer3Config`;
    ``markets`` from the markets file (``config/markets.py`` loads it); ``clock`` stamps
    targets and intents (the service pins it to each request's journaled time)."""

    def __init__(self, config: Layer3Config | None = None, *, markets: Markets | None = None,
                 observer: Observer | None = None, clock: Clock | None = None,
                 trading_states: bool = True) -> None:
        """``trading_states`` False: no trigger is judged and nothing is gated (the
        benchmark's "before"; every state stays ACTIVE)."""
        self.trading_states = trading_states
        self.config = config or Layer3Config()
        self.settings = BookSettings.from_config(self.config)
        self.limits: list[PortfolioLimit] = declared_limits(self.config.portfolio)
        self.markets = markets or Markets()
        self.observer = observer or NULL_OBSERVER
        self.clock = clock or SYSTEM_CLOCK
        self.portfolios: dict[str, PortfolioBook] = {}
        self.next_id = 1

    # ---------------------------------------------------------------- portfolios
    def portfolio(self, name: str, *, create: bool = True) -> PortfolioBook | None:
        """The named portfolio's book (created on first use, up to ``book.max_portfolios``;
        None when absent and ``create`` is false)."""
        pb = self.portfolios.get(name)
        if pb is not None or not create:
            return pb
        nonempty_str(InvalidBookRequestException, "portfolio", name)
        if len(self.portfolios) >= self.settings.max_portfolios:
            raise InvalidBookRequestException(
                "portfolio", name, f"one of the {len(self.portfolios)} existing portfolios "
                f"(book.max_portfolios is {self.settings.max_portfolios})", path=("portfolio",))
        pb = self.portfolios[name] = PortfolioBook(name, self.settings.capital,
                                                   self.settings.closed_intents_kept,
                                                   self._machine(name))
        return pb

    def _machine(self, name: str) -> TradingStateMachine:
        """A portfolio's trading-state machine on the book's clock and observer."""
        return TradingStateMachine(self.config.trading_state, portfolio=name,
                                   clock=self.clock, observer=self.observer)

    def _book(self, name: str) -> PortfolioBook:
        pb = self.portfolio(name)
        assert pb is not None
        return pb

    def _decision_id(self, given: int | None) -> int:
        """The id intents are stamped with: the caller's (the service's journal seq), or
        the book's own counter (library use)."""
        if given is not None:
            return given
        self.next_id += 1
        return self.next_id - 1

    def find_intent(self, client_order_id: str) -> tuple[PortfolioBook, IntentState] | None:
        for pb in self.portfolios.values():
            state = pb.by_cid.get(client_order_id)
            if state is not None:
                return pb, state
        return None

    # ---------------------------------------------------------------- a step
    def _refresh(self, pb: PortfolioBook, now: int) -> tuple[int, tuple[str, ...],
                                                             tuple[str, ...]]:
        """Expire intents, decay stale targets, scale targets that breach a limit now."""
        expired = pb.expire_intents(now)
        decayed = tuple(pb.decay_targets(now, self.settings.target_ttl_ns))
        return expired, decayed, self._repair_targets(pb, now)

    def _repair_targets(self, pb: PortfolioBook, now: int) -> tuple[str, ...]:
        if not pb.targets:
            return ()
        equity = pb.equity()
        if equity <= 0.0:  # every cap is 0: no target fits
            pb.set_targets({}, set(), now)
            return ("equity",)
        pv = equity * (1.0 - LIMIT_HEADROOM)
        # Targets that fit at an equity fit at any larger one (the caps scale with it): the
        # check is skipped while the same targets meet the same caps at no lower equity.
        seen = pb.fit_checked
        if seen is not None and seen[0] is pb.targets and seen[1] is self.settings.caps \
                and pv >= seen[2]:
            return ()
        if pb.target_stats().fit(pv, self.settings.caps):
            pb.fit_checked = (pb.targets, self.settings.caps, pv)
            return ()
        out = run_limits(self.limits, {}, [], pv, {}, self.settings.caps.position * pv,
                         pb.targets)
        if not out.committed_factors:
            return ()
        pb.set_targets(out.committed, set(), now)
        return tuple(sorted(out.committed_factors))

    def _finish(self, pb: PortfolioBook, now: int, request_id: int, cause: IntentCause,
                refreshed: tuple[int, tuple[str, ...], tuple[str, ...]],
                superseded: int = 0) -> BookStep:
        if self.trading_states:
            pb.trading.observe_equity(pb.equity())
        result = rebalance(pb, self.settings, self.markets, now, request_id, cause,
                           gated=self.trading_states)
        pb.forget_idle_marks(self.settings.max_targets)
        result.superseded += superseded
        expired, decayed, scaled = refreshed
        # The targets dicts are replaced (never edited) by set_targets: sharing them is safe.
        step = BookStep(pb.name, request_id, cause.value, result, expired, decayed, scaled,
                        pb.trading.brief(), (pb.targets, pb.updated))
        self._report(pb, step)
        return step

    def _report(self, pb: PortfolioBook, step: BookStep) -> None:
        if self.observer is NULL_OBSERVER:
            return
        r = step.result
        self.observer.emit(BookStepped(
            pb.name, step.cause, tuple([i.reason.value for i in r.issued]),
            tuple([d.reason for d in r.dropped]), r.superseded, step.expired, r.repair,
            step.scaled, book_marks(pb, self.settings.capital)))

    # ---------------------------------------------------------------- allocations
    def begin_allocation(self, portfolio: str, signals: Sequence[Any],
                         prices: Mapping[str, float], mode: str = "incremental", *,
                         price_times: Mapping[str, int] | None = None) -> AllocationPlan:
        """Mark the batch's prices, judge the age of its data (``price_times``: when each
        price was observed, if the caller knows; a request's own prices are fresh),
        refresh, and work out the commitments (module docstring). The engine then sizes the
        batch with ``committed`` against ``sizing_equity``; `finish_allocation` takes its
        allocation."""
        if mode not in ("incremental", "full"):
            raise InvalidBookRequestException("mode", mode, "'incremental' or 'full'",
                                              path=("mode",))
        named = _named_pairs(signals)
        now = self.clock.time_ns()
        self._check_room(None, named, now)  # before the book may be created
        pb = self._book(portfolio)
        if mode == "incremental":
            self._check_room(pb, named, now)  # before anything changes
        pb.mark(prices)
        if self.trading_states:
            observe_batch(pb.trading, signals, price_times)
        expired, decayed, scaled = self._refresh(pb, now)
        committed: Contrib = {}
        if mode == "incremental":
            for strat, row in pb.targets.items():
                kept = {y: usd for y, usd in row.items() if (strat, y) not in named}
                if kept:
                    committed[strat] = kept
        equity = pb.equity()
        sizing = equity * (1.0 - LIMIT_HEADROOM) if equity > 0.0 else pb.capital
        # (holds: the targets dicts are replaced, never edited, so sharing them is safe)
        return AllocationPlan(pb.name, mode, now, equity, sizing, committed, pb.targets,
                              frozenset(named), expired, decayed, scaled)

    def _check_room(self, pb: PortfolioBook | None, named: set[tuple[str, str]],
                    now: int) -> None:
        """Refuse a batch that would leave more than ``book.max_targets`` standing strategy
        x symbol targets (those not yet stale, plus the batch's pairs). A standing target is
        a position to hold: forgetting one would trade, so a cap refuses rather than
        evicts; each target costs every later step time, so without a cap a caller naming
        new pairs would slow every allocation (issue 13)."""
        cap = self.settings.max_targets
        held: set[tuple[str, str]] = set()
        if pb is not None:
            ttl = self.settings.target_ttl_ns
            held = {(s, y) for s, row in pb.updated.items() for y, t in row.items()
                    if now - t <= ttl}
        total = len(held | named)
        if total > cap:
            where = "" if pb is None else f" (portfolio {pb.name!r} holds {len(held)})"
            raise InvalidBookRequestException(
                "signals", total, f"at most book.max_targets ({cap}) standing strategy x "
                f"symbol targets after the batch{where}: set some to zero, send a full "
                "batch, or raise book.max_targets", path=("signals",))

    def finish_allocation(self, plan: AllocationPlan, allocation: EnsembleAllocation,
                          decision_id: int | None = None) -> BookStep:
        """The new standing targets (commitments as the limits left them, plus the batch's
        pairs), then the step's intents."""
        pb = self._book(plan.portfolio)
        did = self._decision_id(decision_id)
        if self.trading_states:
            observe_exits(pb.trading, allocation)
        for sym, prov in allocation.provenance.items():
            pb.paths[sym] = "rl" if prov.get("path") == "rl" else "baseline"
        book = allocation.trace.get("book") or {}
        dust = self.config.sizing.limits.min_position_usd
        if plan.equity <= 0.0 or plan.mode == "full":
            pb.set_targets({}, set(), plan.now)  # a full batch is the whole portfolio
        if plan.equity > 0.0:
            # The commitments as the limits left them: as they stand unless a limit scaled
            # them (the engine then says how).
            scaled = book.get("committed") if book.get("committed_factors") else None
            # A crumb dropped below the minimum notional may have been the short that kept
            # the net inside its cap: then the targets are checked (and scaled) once more.
            if pb.take_batch(plan.named, allocation.breakdown, plan.now, dust, scaled):
                repaired = self._repair_targets(pb, plan.now)
                if repaired:
                    plan = dataclasses.replace(plan, scaled=(*plan.scaled, *repaired))
        live, brackets = pb.target_nets(), book.get("brackets", {})
        for sym in {y for row in allocation.breakdown.values() for y in row}:
            b = brackets.get(sym)
            if b is not None and sym in live:
                pb.brackets[sym] = (b["stop_loss_price"], b["take_profit_price"])
            else:
                pb.brackets.pop(sym, None)
        refreshed = (plan.expired, plan.decayed, plan.scaled)
        return self._finish(pb, plan.now, did, IntentCause.ALLOCATION, refreshed)

    # ---------------------------------------------------------------- reports
    def apply_fills(self, fills: Sequence[Fill],
                    request_id: int | None = None) -> FillsResult:
        """Apply a request's fills (all checked first: ``reports.py``), then re-plan each
        portfolio they touched. Raises `InvalidBookRequestException` (nothing changed)."""
        now = self.clock.time_ns()
        checks = check_fills(fills, self.find_intent, now)
        rid = self._decision_id(request_id)
        results: list[str] = []
        closed: list[ClosedTrade] = []
        touched: dict[str, PortfolioBook] = {}
        for check in checks:
            pb = check.book
            result = "applied" if check.result == "apply" else check.result
            results.append(result)
            if result == "applied":
                touched[pb.name] = pb
                trade = apply_fill(check, now)
                if trade is not None:
                    closed.append(trade)
                    self.observer.emit(TradeClosed(trade.portfolio, trade.symbol, trade.side,
                                                   trade.quantity, trade.realized_pnl,
                                                   trade.realized_return))
            self.observer.emit(FillRecorded(pb.name, check.fill.side, result,
                                            check.fill.quantity * check.fill.price))
        steps = tuple(self._finish(pb, now, rid, IntentCause.FILL, self._refresh(pb, now))
                      for _, pb in sorted(touched.items()))
        return FillsResult(tuple(results), tuple(closed), steps)

    def reconcile(self, portfolio: str, snapshot: PositionsSnapshot,
                  request_id: int | None = None) -> ReconcileResult:
        """Make the portfolio match an authoritative snapshot (``reports.py``), report every
        difference, re-plan. Raises `InvalidBookRequestException` (nothing changed)."""
        check_snapshot(self.portfolio(portfolio, create=False), snapshot)
        pb = self._book(portfolio)
        now = self.clock.time_ns()
        differences, superseded = reconcile(pb, snapshot, now)
        rid = self._decision_id(request_id)
        for d in differences:
            log.warning("reconcile %s: %s %s was %r in the book, %r in the snapshot "
                        "(%.2f USD)", pb.name, d.symbol or "-", d.field, d.book, d.snapshot,
                        d.usd)
        counts = Counter(d.field for d in differences)
        self.observer.emit(PositionsReconciled(pb.name, tuple(sorted(counts.items())),
                                               sum(d.usd for d in differences)))
        step = self._finish(pb, now, rid, IntentCause.RECONCILE, self._refresh(pb, now),
                            superseded)
        return ReconcileResult(tuple(differences), step)

    def mark(self, portfolio: str, prices: Mapping[str, float],
             request_id: int | None = None) -> BookStep:
        """New prices for a portfolio: marked, refreshed, re-planned (library use: a
        backtest or a price feed; the service marks with each request's prices)."""
        pb = self._book(portfolio)
        now = self.clock.time_ns()
        pb.mark(prices)
        rid = self._decision_id(request_id)
        return self._finish(pb, now, rid, IntentCause.MARK, self._refresh(pb, now))

    # ---------------------------------------------------------------- trading states
    def set_trading_state(self, portfolio: str, state: TradingState | str, reason: str,
                          symbol: str | None = None,
                          request_id: int | None = None) -> BookStep:
        """An operator command: the kill switch (HALTED), reduce-only (REDUCING) or a
        resume (ACTIVE), for the portfolio or one ``symbol``; the book re-plans at once (a
        halt that flattens issues its closes now). Raises ``ValidationError`` naming
        ``state`` / ``reason`` / ``symbol`` (nothing changed)."""
        if symbol is not None:
            nonempty_str(InvalidBookRequestException, "symbol", symbol)
        pb = self._book(portfolio)
        now = self.clock.time_ns()
        pb.trading.command(state, reason, symbol)
        rid = self._decision_id(request_id)
        return self._finish(pb, now, rid, IntentCause.TRADING_STATE, self._refresh(pb, now))

    def close_cancelled(self, client_order_ids: Sequence[str]) -> list[str]:
        """The executor cancelled these open intents (an IOC or FOK rest, a rest below one
        lot): each is closed as cancelled. Returns the portfolios touched (sorted), which
        the caller re-plans (`replan`, or the step of the same request's fills); unknown or
        already closed ids are ignored."""
        now = self.clock.time_ns()
        touched: Counter[str] = Counter()
        for cid in client_order_ids:
            found = self.find_intent(cid)
            if found is not None and found[1].status is IntentStatus.OPEN:
                found[0].close_intent(found[1], IntentStatus.CANCELLED, now)
                touched[found[0].name] += 1
        for name, count in sorted(touched.items()):
            self.observer.emit(IntentsCancelled(name, count))
        return sorted(touched)

    def set_symbol_targets(self, portfolio: str, targets: Mapping[str, float],
                           prices: Mapping[str, float], request_id: int | None = None,
                           strategy: str = "policy") -> BookStep:
        """Mark ``prices``, make ``targets`` (signed USD per symbol) the portfolio's standing
        targets, all held by ``strategy`` and set now, fit them to the limits, and re-plan:
        the backtest's way to run any sizing policy through the book."""
        pb = self._book(portfolio)
        now = self.clock.time_ns()
        pb.mark(prices)
        stamped = {(strategy, sym) for sym in targets}
        pb.set_targets({strategy: dict(targets)}, stamped, now)
        rid = self._decision_id(request_id)
        return self._finish(pb, now, rid, IntentCause.ALLOCATION, self._refresh(pb, now))

    def replan(self, portfolio: str, request_id: int | None = None,
               cause: IntentCause = IntentCause.CANCEL) -> BookStep:
        """Refresh and re-plan one portfolio (after intents were closed outside a step)."""
        pb = self._book(portfolio)
        now = self.clock.time_ns()
        rid = self._decision_id(request_id)
        return self._finish(pb, now, rid, cause, self._refresh(pb, now))

    def trading_status(self, portfolio: str = DEFAULT_PORTFOLIO) -> dict[str, Any]:
        """``GET /v1/trading-state``: the portfolio's state, reason and since, the symbols
        with a state of their own, the triggers' levels (a read creates nothing)."""
        pb = self.portfolio(portfolio, create=False)
        machine = pb.trading if pb is not None else self._machine(portfolio)
        return machine.status()

    # ---------------------------------------------------------------- config
    def apply_config(self, config: Layer3Config,
                     request_id: int | None = None) -> list[BookStep]:
        """Hot reload: new limits and execution settings, a capital change (a change of
        ``portfolio_value``) credited to every portfolio's cash; every portfolio is then
        refreshed (targets that no longer fit are scaled) and re-planned."""
        delta = config.portfolio_value - self.config.portfolio_value
        self.config = config
        self.settings = BookSettings.from_config(config)
        self.limits = declared_limits(config.portfolio)
        for pb in self.portfolios.values():
            pb.trading.reconfigure(config.trading_state)
        if not self.portfolios:
            return []
        now = self.clock.time_ns()
        rid = self._decision_id(request_id)
        steps = []
        for _, pb in sorted(self.portfolios.items()):
            if delta:
                pb.adjust_capital(delta)
            steps.append(self._finish(pb, now, rid, IntentCause.CONFIG, self._refresh(pb, now)))
        return steps

    # ---------------------------------------------------------------- views
    def positions(self, portfolio: str = DEFAULT_PORTFOLIO) -> dict[str, Any]:
        """``GET /v1/positions``: positions, equity, exposures, PnL, standing targets. A
        portfolio that does not exist yet is shown empty (a read creates nothing)."""
        pb = self.portfolio(portfolio, create=False) or PortfolioBook(
            portfolio, self.settings.capital, 1)
        return {**positions_view(pb, self.settings.capital),
                "targets": targets_view(pb.targets, pb.updated)}

    def intents(self, portfolio: str = DEFAULT_PORTFOLIO) -> list[dict[str, Any]]:
        """``GET /v1/intents``: the open intents with their fill progress."""
        pb = self.portfolio(portfolio, create=False)
        return [] if pb is None else [s.view() for s in pb.open_intents()]

    # ---------------------------------------------------------------- state
    def export_state(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "next_id": self.next_id,
                "portfolios": {n: pb.to_state() for n, pb in sorted(self.portfolios.items())}}

    def restore_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise StateRestoreError(f"book state version was {state.get('version')!r}, "
                                    f"expected {STATE_VERSION}")
        try:
            self.portfolios = {
                str(n): PortfolioBook.from_state(str(n), s, self.settings.closed_intents_kept,
                                                 self._machine(str(n)))
                for n, s in state["portfolios"].items()}
            self.next_id = int(state["next_id"])
        except (KeyError, TypeError, ValueError, ValidationError) as err:
            raise StateRestoreError(f"book state could not be restored: {err!r}") from err
