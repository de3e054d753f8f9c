"""The whole-book limits hold for ANY sequence of requests (hypothesis state machine).

Random sequences of: allocations (incremental or full, to either of two portfolios, any
strategies, symbols and actions, now and then a cascade EXIT), fills (partial or whole, of
open intents and of superseded ones still remembered, in any order, at prices off the mark,
with fees), authoritative positions snapshots (quantities off the book's, with or without a
cash balance), price moves, config changes of every cap (up and down) and clock advances past
the target and intent TTLs. After every step, for every portfolio, at the current marks and
equity, checked here with formulas of its own (not the book's checker):

(a) the standing targets obey per position, per strategy, gross, net and leverage caps;
(b) the projected book — positions plus open intents — obeys them too (a symbol's exposure
    is attributed to the strategies of its target by their share of its gross);

and every number ``GET /v1/positions`` would show is finite.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from conftest import all_finite, make_cascade, make_signal
from himari_l3 import ManualClock, TacticalAction
from himari_l3._exceptions import ValidationError
from himari_l3.book import Layer3Book, MarketRules, Markets
from himari_l3.book.portfolio import PortfolioBook
from himari_l3.config.schema import Layer3Config, parse_config
from himari_l3.phase3 import Layer3Phase3Hybrid

SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD", "DOGE-USD"]  # DOGE is not in the markets
STRATEGIES = ["momentum", "carry", "meanrev"]
PORTFOLIOS = ["alpha", "beta"]
MARKETS = Markets({
    "BTC-USD": MarketRules("BTC-USD", step_size=0.001, tick_size=0.5, min_quantity=0.001,
                           max_quantity=2.0, min_notional=25.0),
    "ETH-USD": MarketRules("ETH-USD", step_size=0.01, tick_size=0.05, min_notional=10.0),
    "SOL-USD": MarketRules("SOL-USD", step_size=0.1, tick_size=0.01, min_quantity=0.1),
})
TOL = 1e-9

signals = st.lists(st.tuples(st.sampled_from(STRATEGIES), st.sampled_from(SYMBOLS),
                             st.sampled_from(list(TacticalAction)), st.floats(0.3, 1.0),
                             st.floats(0.0, 0.08), st.floats(0.005, 0.2)),
                   min_size=0, max_size=6)
cap_values = st.fixed_dictionaries({
    "max_position_pct": st.sampled_from([0.02, 0.05, 0.15, 0.3]),
    "max_strategy_pct": st.sampled_from([0.05, 0.2, 0.4, 0.8]),
    "max_portfolio_pct": st.sampled_from([0.1, 0.3, 0.8, 1.0]),
    "max_net_pct": st.sampled_from([0.02, 0.1, 0.5, 0.8]),
    "max_leverage": st.sampled_from([0.1, 0.5, 1.0, 3.0]),
})


def _config(caps: dict[str, float]) -> Layer3Config:
    return parse_config(Layer3Config, {
        "sizing": {"kelly": {"fraction": 1.0, "max_fraction": 1.0,
                             "report_strength": 10_000.0},
                   "limits": {"allow_short": True,
                              "max_position_pct": caps["max_position_pct"]}},
        "portfolio": caps,
        "book": {"target_ttl_sec": 600.0},
        "execution": {"intent_ttl_sec": 120.0, "no_trade_band_usd": 5.0},
    })


def _over(value: float, cap: float) -> bool:
    return value > cap * (1.0 + TOL) + TOL


def _symbol_breaches(what: str, per_symbol: dict[str, float], caps: Any,
                     e: float) -> list[str]:
    """Per-symbol, gross / leverage and net breaches of signed USD per symbol."""
    out = [f"{what} position {s}" for s, x in per_symbol.items()
           if _over(abs(x), caps.max_position_pct * e)]
    gross = sum(abs(x) for x in per_symbol.values())
    if _over(gross, min(caps.max_portfolio_pct, caps.max_leverage) * e):
        out.append(f"{what} gross/leverage")
    if _over(abs(sum(per_symbol.values())), caps.max_net_pct * e):
        out.append(f"{what} net")
    return out


def _target_breaches(pb: PortfolioBook, caps: Any, e: float) -> list[str]:
    out = []
    net: dict[str, float] = {}
    for strat, row in pb.targets.items():
        if _over(sum(abs(x) for x in row.values()), caps.max_strategy_pct * e):
            out.append(f"target strategy {strat}")
        for sym, usd in row.items():
            net[sym] = net.get(sym, 0.0) + usd
    return out + _symbol_breaches("target", net, caps, e)


def _projected_breaches(pb: PortfolioBook, caps: Any, e: float) -> list[str]:
    out = []
    exposure: dict[str, float] = {}
    for sym in set(pb.positions) | set(pb.live):
        qty = pb.positions[sym].quantity if sym in pb.positions else 0.0
        qty += sum((s.intent.quantity - s.filled) * (1 if s.intent.side == "buy" else -1)
                   for s in pb.live.get(sym, []))
        exposure[sym] = qty * pb.marks[sym]
    gross_by_symbol: dict[str, float] = {}
    for row in pb.targets.values():
        for sym, usd in row.items():
            gross_by_symbol[sym] = gross_by_symbol.get(sym, 0.0) + abs(usd)
    for strat, row in pb.targets.items():
        share = sum(abs(exposure.get(sym, 0.0)) * abs(usd) / gross_by_symbol[sym]
                    for sym, usd in row.items() if gross_by_symbol[sym] > 0)
        if _over(share, caps.max_strategy_pct * e):
            out.append(f"projected strategy {strat}")
    return out + _symbol_breaches("projected", exposure, caps, e)


class BookMachine(RuleBasedStateMachine):
    """Random request sequences against one `Layer3Book` (see the module docstring)."""

    @initialize(caps=cap_values)
    def start(self, caps: dict[str, float]) -> None:
        self.clock = ManualClock()
        self.config = _config(caps)
        engine = Layer3Phase3Hybrid(enable_metrics=False, config=self.config, clock=self.clock)
        self.book = Layer3Book(engine, markets=MARKETS, clock=self.clock)
        self.prices = {"BTC-USD": 50_000.0, "ETH-USD": 3_000.0, "SOL-USD": 150.0,
                       "DOGE-USD": 0.2}
        self.issued = 0

    @rule(portfolio=st.sampled_from(PORTFOLIOS), mode=st.sampled_from(["incremental", "full"]),
          batch=signals, exit_symbol=st.sampled_from([None, *SYMBOLS]))
    def allocate(self, portfolio: str, mode: str, batch: list[tuple[Any, ...]],
                 exit_symbol: str | None) -> None:
        sigs = [make_signal(strategy_id=st_, symbol=sym, action=act, confidence=conf,
                            risk_score=0.1, expected_return=er, predicted_volatility=vol,
                            timestamp_ns=self.clock.time_ns())
                for st_, sym, act, conf, er, vol in batch]
        cascade = {s: (make_cascade(funding_rate=0.01, oi_change_pct=-0.5, volume_ratio=10.0,
                                    onchain_whale_pressure=1.0, exchange_netflow_zscore=10.0)
                       if s == exit_symbol else make_cascade()) for s in SYMBOLS}
        out = self.book.allocate(sigs, cascade, self.prices, portfolio=portfolio, mode=mode)
        self.issued += len(out.step.result.issued)

    @precondition(lambda self: any(pb.by_cid for pb in self.book.book.portfolios.values()))
    @rule(data=st.data())
    def fill(self, data: st.DataObject) -> None:
        known = sorted((cid, s) for pb in self.book.book.portfolios.values()
                       for cid, s in pb.by_cid.items() if s.remaining > 0)
        if not known:
            return
        picks = data.draw(st.lists(st.sampled_from(known), min_size=1, max_size=3,
                                   unique_by=lambda x: x[0]))
        fills = []
        for cid, state in picks:
            share = data.draw(st.sampled_from([0.25, 0.5, 1.0]))
            price = state.intent.reference_price * data.draw(st.sampled_from([0.97, 1.0, 1.02]))
            qty = state.remaining * share
            fills.append({"symbol": state.intent.symbol, "side": state.intent.side,
                          "quantity": qty, "price": price, "fee": qty * price * 0.001,
                          "client_order_id": cid})
        self.book.apply_fills(fills)

    @rule(portfolio=st.sampled_from(PORTFOLIOS),
          factors=st.lists(st.sampled_from([0.0, 0.5, 1.0, 1.5, -1.0]), min_size=4,
                           max_size=4),
          with_cash=st.booleans())
    def reconcile(self, portfolio: str, factors: list[float], with_cash: bool) -> None:
        pb = self.book.book.portfolios.get(portfolio)
        if pb is None:
            return
        positions = {}
        for sym, f in zip(SYMBOLS, factors, strict=True):
            held = pb.positions[sym].quantity if sym in pb.positions else 0.0
            q = held * f if held else (0.01 * f if f > 0 else 0.0)
            positions[sym] = {"quantity": q, "price": self.prices[sym]}
        snapshot: dict[str, Any] = {"positions": positions}
        if with_cash:
            snapshot["cash"] = pb.cash * 0.99
        self.book.reconcile(portfolio, snapshot)

    @rule(portfolio=st.sampled_from(PORTFOLIOS),
          moves=st.lists(st.sampled_from([0.5, 0.9, 1.0, 1.1, 1.8]), min_size=4, max_size=4))
    def move_prices(self, portfolio: str, moves: list[float]) -> None:
        self.prices = {s: self.prices[s] * m for s, m in zip(SYMBOLS, moves, strict=True)}
        if portfolio in self.book.book.portfolios:
            self.book.mark(self.prices, portfolio)

    @rule(caps=cap_values)
    def change_limits(self, caps: dict[str, float]) -> None:
        self.config = _config(caps)
        self.book.apply_config(self.config)

    @rule(seconds=st.sampled_from([1.0, 60.0, 130.0, 700.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(data=st.data())
    def bad_fill_changes_nothing(self, data: st.DataObject) -> None:
        before = self.book.book.export_state()
        bad = data.draw(st.sampled_from([
            {"client_order_id": "nope"}, {"quantity": -1.0}, {"quantity": float("nan")},
            {"side": "hold"}, {"quantity": 1e9}]))
        known = [(cid, s) for pb in self.book.book.portfolios.values()
                 for cid, s in pb.by_cid.items()]
        good = []
        if known:
            cid, state = known[0]
            good = [{"symbol": state.intent.symbol, "side": state.intent.side,
                     "quantity": state.intent.quantity * 1e-6, "price": 1.0,
                     "client_order_id": cid}]
        fill = {"symbol": "BTC-USD", "side": "buy", "quantity": 1.0, "price": 1.0,
                "client_order_id": good[0]["client_order_id"] if good else "x", **bad}
        try:
            self.book.apply_fills([*good, fill])
        except ValidationError:
            assert self.book.book.export_state() == before
        else:
            raise AssertionError(f"accepted a bad fill {fill}")

    @invariant()
    def limits_hold(self) -> None:
        caps = self.config.portfolio
        for name, pb in sorted(self.book.book.portfolios.items()):
            e = max(pb.equity(), 0.0)
            problems = _target_breaches(pb, caps, e) + _projected_breaches(pb, caps, e)
            assert not problems, (name, problems, e)
            view = self.book.positions(name)
            assert all_finite(view), view


BookMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestBookLimits = BookMachine.TestCase
