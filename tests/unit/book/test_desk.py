"""The execution desk: the book filling its own intents through the paper executor — fills
move positions and teach the learners, cancellations close intents, a replay of the
recorded fills ends in the same state, halts flatten through the same path."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from conftest import make_cascade, make_signal
from himari_l3 import Layer3Config, ManualClock
from himari_l3.book import Layer3Book
from himari_l3.book.desk import ExecutionDesk
from himari_l3.config.schema import parse_config
from himari_l3.executors import PaperExecutor
from himari_l3.phase3 import Layer3Phase3Hybrid

STRONG = {"confidence": 0.95, "risk_score": 0.0, "expected_return": 0.08,
          "predicted_volatility": 0.02}
PRICES = {"BTC-USD": 50_000.0, "ETH-USD": 2_500.0}


class Rig(NamedTuple):
    """A desk, the Layer3Book it fills for, and their manual clock."""

    desk: ExecutionDesk
    lb: Layer3Book
    clock: ManualClock

    def sync(self) -> None:
        self.desk.sync()

    def observe(self, *args: Any, **kw: Any) -> Any:
        return self.desk.observe(*args, **kw)


def desk(**cfg: Any) -> tuple[Rig, ManualClock]:
    """A desk over a Phase 3 book (RL off) and a paper executor, on a manual clock."""
    cfg.setdefault("sizing", {"kelly": {"report_strength": 10_000.0}})
    config = parse_config(Layer3Config, cfg)
    clock = ManualClock()
    engine = Layer3Phase3Hybrid(enable_metrics=False, config=config, clock=clock)
    lb = Layer3Book(engine, clock=clock)
    d = ExecutionDesk(lb.book, PaperExecutor(config.execution.fill_model),
                      apply_fills=lb.apply_fills)
    return Rig(d, lb, clock), clock


def allocate(d: Rig, clock: ManualClock, rid: int, *syms: str,
             prices: dict[str, float] | None = None, **over: Any) -> Any:
    """One allocation stamped now, then the desk's sync and one observation (rid + 1)."""
    sigs = [make_signal(strategy_id="momentum", symbol=s, timestamp_ns=clock.time_ns(),
                        **{**STRONG, **over}) for s in syms]
    out = d.lb.allocate(sigs, make_cascade(), prices or PRICES, decision_id=rid)
    d.sync()
    return out, d.observe(prices or PRICES, clock.time_ns(), rid + 1)


def test_the_desk_fills_its_own_intents_at_the_observation() -> None:
    """The allocation's intents are filled at the observed price plus slippage; the book
    holds the positions, pays the fees, and has nothing open."""
    d, clock = desk()
    out, step = allocate(d, clock, 1, "BTC-USD", "ETH-USD")
    issued = out.step.result.issued
    assert len(issued) == 2 and len(step.fills) == 2 and step.cancelled == ()
    pos = d.lb.positions()
    assert pos["open_intents"] == 0 and d.desk.executor.working() == []
    for i in issued:
        held = pos["positions"][i.symbol]
        assert held["quantity"] == pytest.approx(i.quantity)
        assert held["avg_price"] == pytest.approx(PRICES[i.symbol] * (1 + 2e-4))
    assert pos["fees_paid"] == pytest.approx(sum(f.fee for f in step.fills))
    assert pos["fees_paid"] > 0


def test_closed_trades_teach_the_learners_without_hand_posted_outcomes() -> None:
    """Open, then close at a profit: the strategy's Kelly posterior counts the trade and
    the RL-vs-baseline history has it under the baseline path."""
    d, clock = desk()
    allocate(d, clock, 1, "BTC-USD")
    clock.advance(3600.0)
    up = {"BTC-USD": 55_000.0}
    _, step = allocate(d, clock, 3, "BTC-USD", prices=up, action="SELL")
    assert step.fills_result is not None
    (trade,) = step.fills_result.closed_trades
    assert trade.realized_return == pytest.approx(55_000 * (1 - 2e-4) / (50_000 * 1.0002) - 1,
                                                  rel=1e-9)
    assert trade.strategies == {"momentum": 1.0}
    phase1 = d.lb.phase2.phase1
    assert phase1.kelly.stats_[("momentum", "BTC-USD")].n == 1
    engine = d.lb.engine
    assert isinstance(engine, Layer3Phase3Hybrid)
    assert list(engine.outcomes_["baseline"]) == [pytest.approx(trade.realized_return)]


def test_partial_fills_leave_the_intent_open_until_filled() -> None:
    """Participation capped by the observation's volume: the intent fills over several
    observations, the book's open intent shrinking each time."""
    d, clock = desk(execution={"fill_model": {"max_participation": 0.5}})
    sigs = [make_signal(symbol="BTC-USD", timestamp_ns=clock.time_ns(), **STRONG)]
    out = d.lb.allocate(sigs, make_cascade(), PRICES, decision_id=1)
    d.sync()
    qty = out.step.result.issued[0].quantity
    volume = qty * 0.8  # capacity 0.4 x qty per observation
    seen = []
    for k in range(3):
        clock.advance(1.0)
        step = d.observe(PRICES, clock.time_ns(), 2 + k, volumes={"BTC-USD": volume})
        seen.append(sum(f.quantity for f in step.fills))
    assert seen == pytest.approx([0.4 * qty, 0.4 * qty, 0.2 * qty])
    assert d.lb.positions()["positions"]["BTC-USD"]["quantity"] == pytest.approx(qty)
    assert d.lb.intents() == []


def test_ioc_rests_are_cancelled_and_replanned() -> None:
    """IOC with too little volume: a partial fill, the rest cancelled in the book, and the
    re-plan issues the remainder as a new intent that the executor takes."""
    d, clock = desk(execution={"time_in_force": "IOC"})
    sigs = [make_signal(symbol="BTC-USD", timestamp_ns=clock.time_ns(), **STRONG)]
    out = d.lb.allocate(sigs, make_cascade(), PRICES, decision_id=1)
    d.sync()
    qty = out.step.result.issued[0].quantity
    step = d.observe(PRICES, clock.time_ns(), 2, volumes={"BTC-USD": qty * 3})  # 30 %
    assert step.cancelled == (out.step.result.issued[0].client_order_id,)
    (rest,) = d.lb.intents()
    assert rest["quantity"] == pytest.approx(0.7 * qty, rel=2e-3)  # re-marked at the fill
    assert rest["decision_id"] == 2 and d.desk.executor.working() == [rest["client_order_id"]]


def test_a_halt_flattens_through_the_desk_and_a_resume_reenters() -> None:
    """HALTED (flatten) issues reduce-only closes that the next observation fills; the
    resume lets the standing target back in."""
    d, clock = desk()
    allocate(d, clock, 1, "BTC-USD")
    step = d.lb.set_trading_state("HALTED", "kill switch", request_id=3)
    (close,) = step.result.issued
    assert close.reduce_only and close.side == "sell" and step.trading.state.value == "HALTED"
    d.sync()
    d.observe(PRICES, clock.time_ns(), 4)
    assert d.lb.positions()["positions"]["BTC-USD"]["quantity"] == 0.0
    resumed = d.lb.set_trading_state("ACTIVE", "all clear", request_id=5)
    assert [i.side for i in resumed.result.issued] == ["buy"]


def test_replaying_the_recorded_fills_reproduces_the_state() -> None:
    """A second desk fed the same requests and the first one's fills (under another fill
    model) ends in the same book, learners and executor state."""
    live, clock = desk(execution={"fill_model": {"slippage_noise_bps": 3.0}})
    again, clock2 = desk(execution={"fill_model": {"fee_bps": 40.0}})
    for k, prices in enumerate([PRICES, {"BTC-USD": 51_000.0, "ETH-USD": 2_400.0}]):
        rid = 1 + 2 * k
        for dd, c in ((live, clock), (again, clock2)):
            c.advance(60.0)
            sigs = [make_signal(strategy_id="m", symbol=s, timestamp_ns=c.time_ns(),
                                **{**STRONG, "confidence": 0.9 - 0.2 * k}) for s in prices]
            dd.lb.allocate(sigs, make_cascade(), prices, decision_id=rid)
            dd.sync()
        first = live.observe(prices, clock.time_ns(), rid + 1)
        again.observe(prices, clock2.time_ns(), rid + 1, recorded=list(first.fills))
    assert again.lb.export_state() == live.lb.export_state()
    assert again.desk.export_state() == live.desk.export_state()
