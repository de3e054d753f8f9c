"""How a replay trades: every sizing policy's targets go through the book, its intents are
filled by the paper executor's fill model, and the trading states judge every bar — the
path a paper deployment takes, so the replay reports turnover, fees, slippage and rounding
as live trading would.

Per bar *t* (after the policy sized it):

1. the book takes the policy's targets as its standing targets (`Book.set_symbol_targets`;
   a symbol the policy left out keeps what it holds), fits them to the whole-book limits and
   plans intents: the instrument rules (the markets file: step, minimum quantity and
   notional, ``no_market_rules`` for an unlisted symbol), the no-trade band, reduce-only
   exits, and the trading states' gate;
2. the executor fills them against bar *t*'s close and volume (``fills/``: fee, slippage
   and impact, the participation cap, latency in bars or seconds of bar time); the rest
   waits for later bars (GTC) or is cancelled (IOC/FOK). ``direct`` fills every intent
   whole at the close with the fee and slippage in bps and nothing else (the benchmark's
   "before": no fill model);
3. the trading states see the equity at the next step (daily loss against the equity last
   marked before the day's start, drawdown from the peak) and each bar's cascade readings
   (EXIT halts the symbol). A replay has no operator: ``resume_after_hours`` plays one,
   resuming a portfolio or symbol that long after it left ACTIVE (a resume re-bases the
   loss references, as a live operator's does; None: never — the replay then shows that a
   trip ends trading).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._clock import Clock
from ..book import Book, BookStep, Fill, Markets
from ..book.desk import ExecutionDesk
from ..bootstrap import paper_executor
from ..config.schema import Layer3Config
from ..contracts import CascadeIndicators, CascadeRecommendation
from ..observers import Observer
from ..sizing.cascade import assess_cascade
from ..trading import TradingState, TradingStateChanged

__all__ = ["BookExecution", "ExecutionSetup"]

PORTFOLIO = "backtest"
_ACTIVE = TradingState.ACTIVE


@dataclass(frozen=True, slots=True)
class ExecutionSetup:
    """How a replay executes (module docstring). ``config``: the book's limits, the
    execution settings (band, order type), the fill model (``execution.fill_model``) and the
    trading states (``trading_state``); ``markets``: the instrument rules."""

    config: Layer3Config
    markets: Markets = field(default_factory=Markets)
    paper: bool = True
    trading_states: bool = True
    resume_after_hours: float | None = 24.0

    def with_capital(self, initial_capital: float) -> ExecutionSetup:
        """The same setup with ``portfolio_value`` (the book's starting cash) set."""
        if self.config.portfolio_value == initial_capital:
            return self
        config = self.config.model_copy(update={"portfolio_value": initial_capital})
        return ExecutionSetup(config, self.markets, self.paper, self.trading_states,
                              self.resume_after_hours)

    @classmethod
    def from_costs(cls, initial_capital: float, fees_bps: float, slippage_bps: float,
                   config: Layer3Config | None = None, **kw: Any) -> ExecutionSetup:
        """``config`` (default: the defaults) with ``portfolio_value`` = the capital and the
        fill model's fee and fixed slippage set to the replay's."""
        base = config if config is not None else Layer3Config()
        data = base.model_dump()
        data["portfolio_value"] = initial_capital
        data["execution"]["fill_model"].update(fee_bps=fees_bps, slippage_bps=slippage_bps)
        return cls(Layer3Config.model_validate(data), **kw)


class _Transitions(Observer):
    """Keeps the trading-state transitions (bounded) and counts them."""

    def __init__(self, keep: int = 500) -> None:
        self.keep = keep
        self.rows: list[dict[str, Any]] = []
        self.count = 0

    def emit(self, event: Any) -> None:
        if isinstance(event, TradingStateChanged) and event.is_transition:
            self.count += 1
            if len(self.rows) < self.keep:
                self.rows.append({"timestamp_ns": event.timestamp_ns, "symbol": event.symbol,
                                  "from": event.old.value, "to": event.new.value,
                                  "reason": event.reason.value, "detail": event.detail})


@dataclass
class BarTrades:
    """What one bar's execution did (the replay's per-bar record)."""

    traded_usd: float = 0.0
    fees: float = 0.0
    slippage_usd: float = 0.0
    fills: int = 0
    partial: int = 0


class BookExecution:
    """The replay's book, executor and trading states (module docstring)."""

    def __init__(self, setup: ExecutionSetup, clock: Clock) -> None:
        self.setup = setup
        cfg = setup.config
        self.book = Book(cfg, markets=setup.markets, clock=clock,
                         trading_states=setup.trading_states)
        pb = self.book.portfolio(PORTFOLIO)
        assert pb is not None
        self.pb = pb
        self.transitions = _Transitions()
        pb.trading.observer = self.transitions
        self.clock = clock
        self.desk = None
        if setup.paper:
            self.desk = ExecutionDesk(self.book, paper_executor(cfg.execution.fill_model,
                                                                setup.markets))
        self.dropped: Counter[str] = Counter()
        self.resume_ns = (None if setup.resume_after_hours is None
                          else round(setup.resume_after_hours * 3600e9))
        fm = cfg.execution.fill_model
        self._direct_rate = (fm.fee_bps / 1e4, fm.slippage_bps / 1e4)

    # ------------------------------------------------------------------ the bar
    def equity(self, prices: Mapping[str, float]) -> float:
        """The book's equity marked at ``prices``."""
        self.pb.mark(prices)
        return self.pb.equity()

    def quantity(self, symbol: str) -> float:
        return self.pb.position_qty(symbol)

    def observe_cascade(self, cascade: Mapping[str, CascadeIndicators]) -> None:
        """Each symbol's reading this bar: EXIT halts it (as a live allocation would)."""
        if not self.setup.trading_states or not cascade:
            return
        cfg = self.setup.config.sizing.cascade
        machine = self.pb.trading
        for sym in sorted(cascade):
            rec = assess_cascade(cfg, cascade[sym]).recommendation
            machine.observe_cascade(sym, rec is CascadeRecommendation.EXIT)

    def trade(self, t: int, targets: Mapping[str, float], prices: Mapping[str, float],
              volumes: Mapping[str, float] | None) -> BarTrades:
        """Steps 1 and 2 of the module docstring at bar ``t`` (decision ids 2t+1, 2t+2)."""
        step = self.book.set_symbol_targets(PORTFOLIO, targets, prices, 2 * t + 1)
        self._count_dropped(step)
        out = BarTrades()
        if self.desk is not None:
            self.desk.sync()
            done = self.desk.observe(prices, self.clock.time_ns(), 2 * t + 2, volumes=volumes)
            for f in done.fills:
                out.traded_usd += f.notional
                out.fees += f.fee
                out.slippage_usd += f.quantity * abs(f.price - f.reference_price)
                out.fills += 1
                out.partial += not f.done
            for s in done.fills_result.steps if done.fills_result is not None else ():
                self._count_dropped(s)
        else:
            self._direct(step, out, 2 * t + 2)
        self._operator()
        return out

    def _direct(self, step: BookStep, out: BarTrades, rid: int) -> None:
        """Fill every issued intent whole at its reference price, fee and slippage in bps
        (no fill model)."""
        fee_rate, slip = self._direct_rate
        fills = []
        for n, i in enumerate(step.result.issued):
            price = i.reference_price * (1.0 + slip if i.side == "buy" else 1.0 - slip)
            fee = i.quantity * price * fee_rate
            fills.append(Fill(i.symbol, i.side, i.quantity, price, i.client_order_id, fee,
                              None, f"direct:{rid}:{n}", n))
            out.traded_usd += i.quantity * price
            out.fees += fee
            out.slippage_usd += i.quantity * i.reference_price * slip
        out.fills += len(fills)
        if fills:
            self.book.apply_fills(fills, rid)

    def _count_dropped(self, step: BookStep) -> None:
        for d in step.result.dropped:
            if d.reason != "no_trade_band":  # the band is a choice, not a venue's rule
                self.dropped[d.reason] += 1

    def _operator(self) -> None:
        """The replay's stand-in for an operator: resume what has been restricted for
        ``resume_after_hours``."""
        machine = self.pb.trading
        if self.resume_ns is None or not self.setup.trading_states or machine.all_active():
            return
        now = self.clock.time_ns()
        note = f"backtest operator: resumed after {self.setup.resume_after_hours:g} h"
        for sym in machine.not_active():
            if now - machine.since_ns(sym) >= self.resume_ns:
                machine.command(_ACTIVE, note, sym)
        if machine.state is not _ACTIVE and now - machine.since_ns() >= self.resume_ns:
            machine.command(_ACTIVE, note)

    # ------------------------------------------------------------------ the record
    @property
    def state_code(self) -> int:
        """The portfolio's state now (0 ACTIVE, 1 REDUCING, 2 HALTED)."""
        return self.pb.trading.state.code

    def summary(self, symbols: Sequence[str]) -> dict[str, Any]:
        """What the execution did over the replay (the summary's ``execution`` entry):
        the executor, the instrument rules of ``symbols``, intents dropped by the venue's
        rules, the trading-state transitions."""
        fm = self.setup.config.execution.fill_model
        rules = {s: self.setup.markets.rules(s) for s in symbols}
        return {
            "executor": "paper" if self.setup.paper else "direct",
            "fill_model": fm.model_dump() if self.setup.paper else {
                "fee_bps": fm.fee_bps, "slippage_bps": fm.slippage_bps},
            "instrument_rules": {s: None if r is None else r.to_dict()
                                 for s, r in rules.items()},
            "dropped_intents": dict(sorted(self.dropped.items())),
            "trading_states": self.setup.trading_states,
            "resume_after_hours": self.setup.resume_after_hours,
            "trading_state_transitions": self.transitions.count,
            "transitions": list(self.transitions.rows),
        }
