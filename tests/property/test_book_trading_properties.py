"""While a symbol is not ACTIVE, no intent increases its exposure — over the whole book, for
any sequence of allocations, fills, price moves, operator commands and time (hypothesis)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_cascade, make_signal
from himari_l3 import Layer3Config, ManualClock, TacticalAction
from himari_l3.book import Layer3Book
from himari_l3.config.schema import parse_config
from himari_l3.phase3 import Layer3Phase3Hybrid
from himari_l3.trading import TradingState

SYMS = ("BTC-USD", "ETH-USD")
BASE = {"BTC-USD": 50_000.0, "ETH-USD": 2_500.0}

_alloc = st.tuples(st.just("alloc"), st.sampled_from(SYMS),
                   st.sampled_from([TacticalAction.BUY, TacticalAction.SELL,
                                    TacticalAction.HOLD]),
                   st.floats(0.55, 0.95), st.sampled_from([0.0, 0.0, 10.0]))
_fill = st.tuples(st.just("fill"), st.just(0), st.sampled_from([0.5, 1.0]))
# Allocations and fills are the common steps (so that restricted symbols hold positions).
ops = st.lists(st.one_of(
    _alloc, _fill, _alloc, _fill,
    st.tuples(st.just("move"), st.sampled_from(SYMS), st.floats(0.7, 1.3)),
    st.tuples(st.just("command"), st.sampled_from(list(TradingState)),
              st.sampled_from([None, *SYMS])),
    st.tuples(st.just("advance"), st.sampled_from([1.0, 60.0, 600.0, 90_000.0])),
), min_size=3, max_size=30)


def _apply(lb: Layer3Book, clock: ManualClock, prices: dict[str, float],
           op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "alloc":
        _, sym, action, conf, age = op
        sig = make_signal(strategy_id="m", symbol=sym, action=action, confidence=conf,
                          risk_score=0.0, expected_return=0.05, predicted_volatility=0.02,
                          timestamp_ns=clock.time_ns() - round(age * 1e9))
        lb.allocate([sig], make_cascade(), dict(prices))
    elif kind == "fill":  # every open intent, all of it or half
        open_ = lb.intents()
        if open_:
            lb.apply_fills([{"symbol": i["symbol"], "side": i["side"],
                             "quantity": i["remaining_quantity"] * op[2],
                             "price": prices[i["symbol"]],
                             "client_order_id": i["client_order_id"]} for i in open_])
    elif kind == "move":
        prices[op[1]] *= op[2]
        if lb.book.portfolios:
            lb.mark({op[1]: prices[op[1]]})
    elif kind == "command":
        lb.set_trading_state(op[1], "test", symbol=op[2])
    else:
        clock.advance(op[1])
        if lb.book.portfolios:
            lb.mark(dict(prices))


def _check(lb: Layer3Book) -> None:
    pb = lb.book.portfolios.get("default")
    if pb is None:
        return
    for sym in SYMS:
        if pb.trading.effective(sym) is TradingState.ACTIVE:
            continue
        q = pb.position_qty(sym)
        projected = q + pb.live_qty(sym)
        assert abs(projected) <= abs(q) * (1 + 1e-9) + 1e-12, (sym, q, projected)
        assert projected * q >= 0.0, (sym, q, projected)
        assert all(s.intent.reduce_only for s in pb.live.get(sym, ())), sym


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops, st.sampled_from(["flatten", "freeze"]))
def test_no_intent_adds_exposure_while_not_active(seq: list[tuple[Any, ...]],
                                                  halt_action: str) -> None:
    """After every step, each symbol trading under REDUCING or HALTED has position plus open
    intents between zero and its position, and only reduce-only intents open."""
    config = parse_config(Layer3Config, {
        "sizing": {"kelly": {"report_strength": 10_000.0}, "limits": {"allow_short": True}},
        "trading_state": {"halt_action": halt_action}})
    clock = ManualClock()
    lb = Layer3Book(Layer3Phase3Hybrid(enable_metrics=False, config=config, clock=clock),
                    clock=clock)
    prices = dict(BASE)
    for op in seq:
        _apply(lb, clock, prices, op)
        _check(lb)
