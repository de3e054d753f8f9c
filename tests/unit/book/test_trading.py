"""Trading states in the book: what each trigger does to the intents it issues (stale data,
cascade EXIT, daily loss, operator commands, freeze), and how a batch's data ages."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import make_cascade, make_signal
from himari_l3 import Layer3Config, ManualClock, TacticalAction
from himari_l3._exceptions import ValidationError
from himari_l3.book import Layer3Book
from himari_l3.book.trading import signal_times
from himari_l3.config.schema import parse_config
from himari_l3.phase3 import Layer3Phase3Hybrid
from himari_l3.trading import TradingState

STRONG = {"confidence": 0.95, "risk_score": 0.0, "expected_return": 0.08,
          "predicted_volatility": 0.02}
PRICES = {"BTC-USD": 50_000.0, "ETH-USD": 2_500.0}
EXIT = {"funding_rate": 0.01, "oi_change_pct": -0.5, "volume_ratio": 10.0,
        "onchain_whale_pressure": 1.0, "exchange_netflow_zscore": 10.0}


def book(**cfg: Any) -> tuple[Layer3Book, ManualClock]:
    """A Phase 3 book (RL off) on a manual clock, Kelly trusting the signals."""
    cfg.setdefault("sizing", {"kelly": {"report_strength": 10_000.0}})
    config = parse_config(Layer3Config, cfg)
    clock = ManualClock()
    engine = Layer3Phase3Hybrid(enable_metrics=False, config=config, clock=clock)
    return Layer3Book(engine, clock=clock), clock


def alloc(lb: Layer3Book, clock: ManualClock, *syms: str, age_sec: float = 0.0,
          prices: dict[str, float] | None = None, cascade: dict[str, Any] | None = None,
          **over: Any) -> Any:
    """A batch of strong momentum signals for ``syms``, stamped ``age_sec`` ago."""
    stamp = clock.time_ns() - round(age_sec * 1e9)
    sigs = [make_signal(strategy_id="momentum", symbol=s, timestamp_ns=stamp,
                        **{**STRONG, **over}) for s in syms]
    return lb.allocate(sigs, make_cascade(**(cascade or {})), prices or PRICES)


def fill_all(lb: Layer3Book, out: Any, price: float | None = None) -> Any:
    """Fill every intent the step issued, in full, at its reference price (or ``price``)."""
    return lb.apply_fills([{"symbol": i.symbol, "side": i.side, "quantity": i.quantity,
                            "price": price or i.reference_price,
                            "client_order_id": i.client_order_id}
                           for i in out.step.result.issued])


def test_signal_times_take_each_strategys_latest_and_the_oldest_of_those() -> None:
    """Per symbol: latest stamp per strategy (a stale duplicate does not count), then the
    oldest strategy; dicts accepted, malformed signals skipped."""
    sigs = [make_signal(strategy_id="a", timestamp_ns=100), make_signal(strategy_id="a",
                                                                        timestamp_ns=300),
            make_signal(strategy_id="b", timestamp_ns=200),
            {"strategy_id": "c", "symbol": "ETH-USD", "timestamp_ns": 50},
            {"strategy_id": "d", "symbol": "ETH-USD", "timestamp_ns": True}, object()]
    assert signal_times(sigs) == {"BTC-USD": 200, "ETH-USD": 50}


def test_stale_signals_open_nothing() -> None:
    """A signal 6 s old: the symbol is REDUCING, so an empty book opens nothing; the
    response says why."""
    lb, clock = book()
    out = alloc(lb, clock, "BTC-USD", age_sec=6.0)
    assert out.step.result.issued == []
    brief = out.step.to_dict()["trading_state"]
    assert brief["state"] == "ACTIVE" and brief["symbols"] == {"BTC-USD": "REDUCING"}
    fresh = alloc(lb, clock, "BTC-USD")
    assert [i.side for i in fresh.step.result.issued] == ["buy"]


def test_reducing_allows_reductions_only() -> None:
    """REDUCING: a larger target is held at the position; a smaller one is reduced with a
    reduce-only sell; a flip becomes a close."""
    lb, clock = book(sizing={"kelly": {"report_strength": 10_000.0},
                             "limits": {"allow_short": True}})
    fill_all(lb, alloc(lb, clock, "BTC-USD", confidence=0.7))
    qty = lb.positions()["positions"]["BTC-USD"]["quantity"]
    lb.set_trading_state("REDUCING", "risk off")
    clock.advance(60.0)
    assert alloc(lb, clock, "BTC-USD").step.result.issued == []  # would have grown it
    flip = alloc(lb, clock, "BTC-USD", action=TacticalAction.SELL)
    (close,) = flip.step.result.issued
    assert (close.side, close.reduce_only, close.reason.value) == ("sell", True, "close")
    assert close.quantity == pytest.approx(qty)


def test_a_state_change_supersedes_open_intents_that_add_exposure() -> None:
    """An open buy becomes unwanted when the symbol halts: superseded, nothing to close."""
    lb, clock = book()
    out = alloc(lb, clock, "BTC-USD")
    assert lb.intents() and out.step.result.issued[0].side == "buy"
    step = lb.set_trading_state("HALTED", "incident", symbol="BTC-USD")
    assert step.result.superseded == 1 and step.result.issued == [] and lb.intents() == []


def test_freeze_keeps_positions_and_issues_nothing() -> None:
    """halt_action freeze: a held position stays, open intents go, nothing is issued."""
    lb, clock = book(trading_state={"halt_action": "freeze"})
    fill_all(lb, alloc(lb, clock, "BTC-USD"))
    alloc(lb, clock, "ETH-USD")
    step = lb.set_trading_state("HALTED", "freeze all")
    assert step.result.issued == [] and lb.intents() == []
    assert lb.positions()["positions"]["BTC-USD"]["quantity"] > 0


def test_cascade_exit_halts_the_symbol_and_it_stays_halted() -> None:
    """An EXIT reading halts the symbol (closes it); calm readings later do not reopen it
    without an operator (no cool-down configured); the resume re-enters."""
    lb, clock = book()
    fill_all(lb, alloc(lb, clock, "BTC-USD"))
    out = alloc(lb, clock, "BTC-USD", cascade=EXIT)
    assert out.step.to_dict()["trading_state"]["symbols"] == {"BTC-USD": "HALTED"}
    assert [(i.side, i.reduce_only) for i in out.step.result.issued] == [("sell", True)]
    fill_all(lb, out)
    clock.advance(3600.0)
    calm = alloc(lb, clock, "BTC-USD")
    assert calm.allocation.allocations["BTC-USD"] > 0 and calm.step.result.issued == []
    # The resume trades toward the standing target at once (it still decays with its TTL).
    resumed = lb.set_trading_state("ACTIVE", "cascade over", symbol="BTC-USD")
    assert [i.side for i in resumed.result.issued] == ["buy"]


def test_daily_loss_halts_the_portfolio_and_flattens() -> None:
    """Long 15 % of equity in BTC; BTC falls 25 %: a 3.75 % daily loss halts the portfolio
    at the next step, which issues the closes."""
    lb, clock = book()
    fill_all(lb, alloc(lb, clock, "BTC-USD"))
    clock.advance(60.0)
    out = alloc(lb, clock, "ETH-USD", prices={"BTC-USD": 37_500.0, "ETH-USD": 2_500.0})
    st = lb.trading_state()
    assert st["state"] == "HALTED" and st["reason"] == "daily_loss"
    sides = {(i.symbol, i.side, i.reduce_only) for i in out.step.result.issued}
    assert sides == {("BTC-USD", "sell", True)}


def test_trading_state_survives_export_and_restore() -> None:
    """A halted symbol and portfolio come back from the book's state."""
    lb, clock = book()
    alloc(lb, clock, "BTC-USD")
    lb.set_trading_state("REDUCING", "slow down")
    lb.set_trading_state("HALTED", "bad venue", symbol="ETH-USD")
    twin, _ = book()
    twin.book.restore_state(lb.book.export_state())
    assert twin.trading_state() == lb.trading_state()
    assert twin.book.export_state() == lb.book.export_state()
    assert twin.book.portfolios["default"].trading_state is TradingState.REDUCING


def test_bad_commands_name_the_field_and_change_nothing() -> None:
    """Unknown state, empty reason, bad symbol: a ValidationError naming it."""
    lb, _ = book()
    for kw, field in (({"state": "PAUSED", "reason": "x"}, "state"),
                      ({"state": "HALTED", "reason": ""}, "reason"),
                      ({"state": "HALTED", "reason": "x", "symbol": ""}, "symbol")):
        with pytest.raises(ValidationError) as err:
            lb.set_trading_state(kw.pop("state"), kw.pop("reason"), **kw)
        assert err.value.field == field
    assert lb.trading_state()["state"] == "ACTIVE"
