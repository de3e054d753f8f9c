"""Unit tests of the Phase 2 multi-strategy portfolio allocator (SPEC §4)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import make_cascade, make_metrics_observer, make_signal
from himari_l3 import CascadeIndicators, EnsembleAllocation, ManualClock
from himari_l3.events import CorrelationUpdated, InputRejected
from himari_l3.observers import RecordingObserver
from himari_l3.phase2 import Layer3Phase2Portfolio
from himari_l3.portfolio.correlation import InvalidReturnsException
from himari_l3.portfolio.drift import WEIGHT_HISTORY_COLUMNS

PV = 100_000.0
BTC, ETH, SOL = "BTC-USD", "ETH-USD", "SOL-USD"
PRICES = {BTC: 50_000.0, ETH: 3_000.0, SOL: 150.0}
EXIT_CASCADE = CascadeIndicators(funding_rate=0.01, oi_change_pct=-0.5, volume_ratio=10.0,
                                 onchain_whale_pressure=1.0, exchange_netflow_zscore=10.0)


def portfolio(**kw: Any) -> Layer3Phase2Portfolio:
    """The user's Phase 2 construction, metrics on an isolated registry, a manual clock."""
    args: dict[str, Any] = {
        "portfolio_value": PV, "kelly_fraction": 0.25, "max_position_pct": 0.15,
        "max_strategy_pct": 0.40, "max_portfolio_pct": 0.80, "max_correlation": 0.7,
        "enable_metrics": True,
    }
    args.update(kw)
    args.setdefault("observer", make_metrics_observer())
    args.setdefault("clock", ManualClock())
    return Layer3Phase2Portfolio(**args)


def user_signals() -> list[Any]:
    """The user's example: three strategies over BTC and ETH."""
    return [
        make_signal(strategy_id="momentum", symbol=BTC, confidence=0.8, expected_return=0.05),
        make_signal(strategy_id="mean_reversion", symbol=ETH, confidence=0.6),
        make_signal(strategy_id="breakout", symbol=BTC, confidence=0.9, expected_return=0.06),
    ]


def prove_edge(p: Layer3Phase2Portfolio, strategy_id: str, symbol: str,
               trades: int = 400) -> None:
    """Closed trades of +6 % / -4 % in turn (mean +1 %, sd 5 %): enough evidence that the
    sceptical prior lets the strategy size up to the caps."""
    for i in range(trades):
        p.phase1.update_from_trade_result(strategy_id, symbol, 0.06 if i % 2 else -0.04)


def calm() -> dict[str, CascadeIndicators]:
    return {s: make_cascade() for s in PRICES}


def check_invariants(alloc: EnsembleAllocation, pos: float = 0.15, strat: float = 0.40,
                     port: float = 0.80) -> None:
    """Every Phase 2 budget holds, values are finite, weights sum to 1."""
    pv = alloc.portfolio_value
    tol = 1e-9 * pv
    for sym, usd in alloc.allocations.items():
        assert math.isfinite(usd), sym
        assert abs(usd) <= pos * pv + tol, (sym, usd)
    for s, row in alloc.breakdown.items():
        assert sum(abs(x) for x in row.values()) <= strat * pv + tol, s
    gross = sum(abs(x) for x in alloc.allocations.values())
    assert gross <= port * pv + tol
    assert alloc.total_allocated_usd == pytest.approx(gross)
    if alloc.strategy_weights:
        assert sum(alloc.strategy_weights.values()) == pytest.approx(1.0)
    for sym, usd in alloc.allocations.items():
        net = sum(row.get(sym, 0.0) for row in alloc.breakdown.values())
        assert net == pytest.approx(usd, abs=1e-6)


# ------------------------------------------------------------------ the user's usage
def test_user_phase2_usage_allocates_both_symbols() -> None:
    """The user's construction and three signals give one capped target per symbol."""
    p = portfolio()
    alloc = p.process_multi_strategy_signals(user_signals(), calm(), PRICES)
    assert set(alloc.allocations) == {BTC, ETH}
    assert alloc.allocations[BTC] > 0 and alloc.allocations[ETH] > 0
    assert set(alloc.strategy_weights) == {"momentum", "mean_reversion", "breakout"}
    assert alloc.rejected_signals == []
    check_invariants(alloc)
    json.dumps(alloc.to_dict())  # serialisable


def test_user_phase2_position_cap_named_position() -> None:
    """Two strategies whose BTC sizes sum past 15 % are capped, and the limit is 'position'."""
    p = portfolio()
    prove_edge(p, "momentum", BTC)
    prove_edge(p, "breakout", BTC)
    alloc = p.process_multi_strategy_signals(user_signals(), calm(), PRICES)
    before = alloc.trace["nets_before_correlation"][BTC]
    assert before > 0.15 * PV  # the scenario really exceeds the cap
    assert alloc.allocations[BTC] == pytest.approx(0.15 * PV, rel=1e-9)
    assert alloc.binding_limits[BTC] == "position"
    assert alloc.binding_limits[ETH] == "none"


def test_export_weight_history_csv(tmp_path: Path) -> None:
    """export_weight_history writes the documented columns, one row per strategy per batch."""
    p = portfolio()
    a1 = p.process_multi_strategy_signals(user_signals(), calm(), PRICES)
    p.clock.advance(60.0)  # type: ignore[attr-defined]
    p.process_multi_strategy_signals(user_signals()[:2], calm(), PRICES)
    path = tmp_path / "sub" / "weights.csv"
    n = p.export_weight_history(path)
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0].keys()) == WEIGHT_HISTORY_COLUMNS == (
        "timestamp_ns", "timestamp_iso", "strategy_id", "weight", "total_allocated_usd",
        "num_strategies")
    assert n == len(rows) == 3 + 2
    first = [r for r in rows if int(r["timestamp_ns"]) == a1.timestamp_ns]
    assert {r["strategy_id"] for r in first} == set(a1.strategy_weights)
    assert sum(float(r["weight"]) for r in first) == pytest.approx(1.0)
    assert all(int(r["num_strategies"]) == 3 for r in first)
    assert float(first[0]["total_allocated_usd"]) == pytest.approx(a1.total_allocated_usd)
    assert first[0]["timestamp_iso"].startswith("2023-11-14T22:")


def test_remaining_risk_budget_before_and_after() -> None:
    """The remaining budget is the full limit before any allocation, limit minus use after."""
    p = portfolio()
    full = p.get_remaining_risk_budget()
    assert full["portfolio_usd"] == pytest.approx(0.80 * PV)
    assert full["per_symbol_usd"] == {}
    alloc = p.process_multi_strategy_signals(user_signals(), calm(), PRICES)
    left = p.get_remaining_risk_budget()
    assert left["portfolio_usd"] == pytest.approx(0.80 * PV - alloc.total_allocated_usd)
    assert left["portfolio_pct"] == pytest.approx(0.80 - alloc.total_allocated_usd / PV)
    assert left["per_symbol_usd"][ETH] == pytest.approx(0.15 * PV - alloc.allocations[ETH])
    for s, row in alloc.breakdown.items():
        used = sum(abs(x) for x in row.values())
        assert left["per_strategy_usd"][s] == pytest.approx(0.40 * PV - used)


def test_get_state_reports_limits_and_last_allocation() -> None:
    """get_state is JSON-ready and reports limits, batches and the last allocation."""
    p = portfolio()
    p.process_multi_strategy_signals(user_signals(), calm(), PRICES)
    state = json.loads(json.dumps(p.get_state()))
    assert state["batches_total"] == 1
    assert state["limits"]["max_position_pct"] == 0.15
    assert state["limits"]["max_strategy_pct"] == 0.40
    assert state["limits"]["max_portfolio_pct"] == 0.80
    assert state["limits"]["correlation"]["max_correlation"] == 0.7
    assert state["last_allocation"]["allocations"].keys() == {BTC, ETH}
    assert state["weight_history_rows"] == 3


def test_metrics_observe_the_allocation() -> None:
    """An allocation increments allocations_total{phase=phase2} on the injected registry."""
    obs = make_metrics_observer()
    p = portfolio(observer=obs)
    p.process_multi_strategy_signals(user_signals(), calm(), PRICES)
    reg = obs.metrics.registry
    assert reg.get_sample_value("himari_l3_allocations_total", {"phase": "phase2"}) == 1.0
    assert reg.get_sample_value("himari_l3_portfolio_positions") == 2.0


# ------------------------------------------------------------------- validation
def test_one_bad_signal_is_rejected_with_reason_rest_allocated() -> None:
    """A signal with confidence 1.7 is dropped with its reason; the others are allocated."""
    p = portfolio()
    bad = {**make_signal(strategy_id="bad", symbol=SOL).to_dict(), "confidence": 1.7}
    alloc = p.process_multi_strategy_signals([*user_signals(), bad], calm(), PRICES)
    assert set(alloc.allocations) == {BTC, ETH}
    (rej,) = alloc.rejected_signals
    assert rej["code"] == "INVALID_SIGNAL" and rej["strategy_id"] == "bad"
    assert "confidence" in rej["reason"] and "1.7" in rej["reason"]


@pytest.mark.parametrize("price", [None, math.nan, math.inf, -1.0, 0.0])
def test_missing_or_bad_price_drops_only_that_signal(price: float | None) -> None:
    """A missing, NaN, infinite or non-positive price drops only the signals of that symbol."""
    prices: dict[str, Any] = dict(PRICES)
    if price is None:
        del prices[ETH]
    else:
        prices[ETH] = price
    alloc = portfolio().process_multi_strategy_signals(user_signals(), calm(), prices)
    assert set(alloc.allocations) == {BTC}
    (rej,) = alloc.rejected_signals
    assert rej["symbol"] == ETH
    assert rej["code"] == ("MISSING_PRICE" if price is None else "INVALID_PRICE")


def test_missing_cascade_drops_only_that_signal() -> None:
    """A symbol without cascade indicators is rejected; the others go on."""
    cascades = {BTC: make_cascade()}
    alloc = portfolio().process_multi_strategy_signals(user_signals(), cascades, PRICES)
    assert set(alloc.allocations) == {BTC}
    assert [r["code"] for r in alloc.rejected_signals] == ["MISSING_CASCADE"]


def test_duplicate_strategy_symbol_newest_wins() -> None:
    """Two signals of one strategy on one symbol: the newer is used, the older is listed."""
    old = make_signal(strategy_id="m", confidence=0.9, timestamp_ns=1)
    new = make_signal(strategy_id="m", confidence=0.4, timestamp_ns=2)
    a = portfolio().process_multi_strategy_signals([old, new], calm(), PRICES)
    b = portfolio().process_multi_strategy_signals([new], calm(), PRICES)
    assert a.allocations == b.allocations
    assert [r["code"] for r in a.rejected_signals] == ["DUPLICATE_SUPERSEDED"]


# ---------------------------------------------------------- netting, budgets, exits
def test_symbol_appears_once_and_strategies_net() -> None:
    """BUY and SELL from two strategies on one symbol net into one signed target."""
    p = portfolio(allow_short=True)
    buy = make_signal(strategy_id="a", symbol=BTC, confidence=0.9, expected_return=0.05)
    sell = make_signal(strategy_id="b", symbol=BTC, action="SELL", confidence=0.5,
                       expected_return=0.01)
    alloc = p.process_multi_strategy_signals([buy, sell], calm(), PRICES)
    assert list(alloc.allocations) == [BTC]
    a, b = alloc.breakdown["a"][BTC], alloc.breakdown["b"][BTC]
    assert a > 0 > b
    assert alloc.allocations[BTC] == pytest.approx(a + b)
    assert alloc.trace["netted_usd"] > 0
    check_invariants(alloc)


def test_strategy_budget_scales_proportionally() -> None:
    """A strategy over its budget is scaled down evenly and the binding limit is 'strategy'."""
    p = portfolio(kelly_fraction=1.0, max_strategy_pct=0.10, max_position_pct=0.5)
    sigs = [make_signal(strategy_id="big", symbol=s, confidence=0.95, expected_return=0.06)
            for s in PRICES]
    alloc = p.process_multi_strategy_signals(sigs, calm(), PRICES)
    row = alloc.breakdown["big"]
    assert sum(abs(x) for x in row.values()) == pytest.approx(0.10 * PV, rel=1e-9)
    raw = alloc.trace["nets_before_correlation"]
    ratios = {s: row[s] / raw[s] for s in row}
    assert max(ratios.values()) == pytest.approx(min(ratios.values()), rel=1e-9)
    assert set(alloc.binding_limits.values()) == {"strategy"}
    check_invariants(alloc, 0.5, 0.10, 0.80)


def test_portfolio_budget_scales_everything() -> None:
    """Gross over the portfolio budget scales every symbol by one factor ('portfolio')."""
    p = portfolio(max_portfolio_pct=0.005)  # ordinary signals size ~0.24 % each before outcomes
    sigs = [make_signal(strategy_id=f"s{i}", symbol=s) for i, s in enumerate(PRICES)]
    alloc = p.process_multi_strategy_signals(sigs, calm(), PRICES)
    assert alloc.total_allocated_usd == pytest.approx(0.005 * PV, rel=1e-9)
    assert set(alloc.binding_limits.values()) == {"portfolio"}
    check_invariants(alloc, 0.15, 0.40, 0.005)


def test_cascade_exit_batch_allocates_zero() -> None:
    """Cascade EXIT readings on every symbol leave every allocation at 0."""
    p = portfolio()
    alloc = p.process_multi_strategy_signals(user_signals(), EXIT_CASCADE, PRICES)
    assert alloc.allocations == {BTC: 0.0, ETH: 0.0}
    assert alloc.total_allocated_usd == 0.0
    assert alloc.strategy_weights == {}


def test_cascade_exit_on_one_symbol_only() -> None:
    """EXIT on BTC zeroes BTC, ETH is still allocated."""
    cascades = {BTC: EXIT_CASCADE, ETH: make_cascade()}
    alloc = portfolio().process_multi_strategy_signals(user_signals(), cascades, PRICES)
    assert alloc.allocations[BTC] == 0.0
    assert alloc.allocations[ETH] > 0.0


def test_sell_without_shorting_never_increases_a_long() -> None:
    """A strategy long from the last batch that now says SELL goes to 0 (shorts disabled)."""
    p = portfolio()
    first = p.process_multi_strategy_signals(user_signals(), calm(), PRICES)
    held = first.breakdown["momentum"][BTC]
    assert held > 0
    sell = make_signal(strategy_id="momentum", symbol=BTC, action="SELL", timestamp_ns=2)
    second = p.process_multi_strategy_signals([sell], calm(), PRICES)
    assert second.allocations[BTC] == 0.0
    assert second.breakdown.get("momentum", {}).get(BTC, 0.0) == 0.0


def test_hold_never_increases_exposure() -> None:
    """A HOLD keeps at most the strategy's current position, even when the cap allows more."""
    p = portfolio()
    first = p.process_multi_strategy_signals(
        [make_signal(strategy_id="m", symbol=ETH, confidence=0.4)], calm(), PRICES)
    held = first.allocations[ETH]
    hold = make_signal(strategy_id="m", symbol=ETH, action="HOLD", confidence=1.0,
                       regime="TRENDING_UP", timestamp_ns=2)
    for _ in range(4):  # enough confirmations to loosen the regime
        alloc = p.process_multi_strategy_signals([hold], calm(), PRICES)
        assert 0.0 <= alloc.allocations[ETH] <= held + 1e-9


# -------------------------------------------------------------- drift and history
def test_weight_drift_flagged_above_twenty_percent() -> None:
    """A strategy whose weight changes by more than 20 % is flagged; a steady one is not."""
    p = portfolio()
    p.process_multi_strategy_signals(user_signals(), calm(), PRICES)
    same = p.process_multi_strategy_signals(user_signals(), calm(), PRICES)
    assert same.drifted_strategies == []
    assert same.max_drift_pct == pytest.approx(0.0, abs=1e-6)
    shifted = [*user_signals()[:2],
               make_signal(strategy_id="breakout", symbol=SOL, confidence=0.3,
                           expected_return=0.004)]
    alloc = p.process_multi_strategy_signals(shifted, calm(), PRICES)
    drift = alloc.trace["drift"]
    assert alloc.drifted_strategies == sorted(s for s, d in drift.items() if d > 0.20)
    assert "breakout" in alloc.drifted_strategies
    assert alloc.max_drift_pct == pytest.approx(100 * max(drift.values()))


def test_weight_history_is_bounded(tmp_path: Path) -> None:
    """The weight history keeps at most weight_history_size rows."""
    from himari_l3.config.schema import PortfolioConfig

    p = portfolio(config=PortfolioConfig(weight_history_size=10))
    for _ in range(8):
        p.process_multi_strategy_signals(user_signals(), calm(), PRICES)
    assert p.export_weight_history(tmp_path / "w.csv") == 10
    assert p.get_state()["weight_history_rows"] == 10


# ------------------------------------------------------------------- correlation
def correlated_history(p: Layer3Phase2Portfolio, rho_sign: float = 1.0, n: int = 60) -> None:
    rng = np.random.default_rng(7)
    for t in range(n):
        x = float(rng.normal(0, 0.02))
        noise = float(rng.normal(0, 0.002))
        p.update_correlations({BTC: x, ETH: rho_sign * x + noise,
                               SOL: float(rng.normal(0, 0.02))}, timestamp_ns=t)


def two_longs() -> list[Any]:
    return [make_signal(strategy_id="a", symbol=BTC, confidence=0.5, expected_return=0.01),
            make_signal(strategy_id="b", symbol=ETH, confidence=0.5, expected_return=0.01)]


def test_correlated_same_direction_exposure_is_penalised() -> None:
    """Two longs on highly correlated symbols are both cut; without history they are not."""
    plain = portfolio().process_multi_strategy_signals(two_longs(), calm(), PRICES)
    assert plain.correlation_penalties == {BTC: 0.0, ETH: 0.0}
    p = portfolio()
    correlated_history(p)
    alloc = p.process_multi_strategy_signals(two_longs(), calm(), PRICES)
    assert alloc.correlation_penalties[BTC] > 0.0
    assert alloc.correlation_penalties[ETH] > 0.0
    for s in (BTC, ETH):
        assert 0.0 < alloc.allocations[s] < plain.allocations[s]
    check_invariants(alloc)


def test_opposite_directions_are_not_penalised() -> None:
    """A long and a short on correlated symbols hedge each other: no pairwise penalty."""
    sigs = [two_longs()[0],
            make_signal(strategy_id="b", symbol=ETH, action="SELL", confidence=0.5,
                        expected_return=0.01)]
    p = portfolio(allow_short=True)
    correlated_history(p)
    alloc = p.process_multi_strategy_signals(sigs, calm(), PRICES)
    assert alloc.allocations[BTC] > 0 > alloc.allocations[ETH]
    assert alloc.correlation_penalties == {BTC: 0.0, ETH: 0.0}


def test_multi_asset_kelly_applied_and_never_grows() -> None:
    """With edges, volatilities and correlated history, multi-asset Kelly is applied and
    only shrinks sizes (multipliers in [0, 1])."""
    p = portfolio()
    correlated_history(p)
    alloc = p.process_multi_strategy_signals(two_longs(), calm(), PRICES)
    assert alloc.trace["multi_asset_kelly"].startswith("applied")
    mult = alloc.trace["correlation_multipliers"]
    assert all(0.0 <= m <= 1.0 for m in mult.values())
    assert min(mult.values()) < 1.0


def test_update_correlations_rejects_nan_and_names_field() -> None:
    """A NaN return is refused with the symbol's field named; the monitor is unchanged."""
    p = portfolio()
    with pytest.raises(InvalidReturnsException, match=r"returns\[ETH-USD\]"):
        p.update_correlations({BTC: 0.01, ETH: math.nan}, timestamp_ns=1)
    assert p.correlations.rows_ == type(p.correlations.rows_)()


def test_observe_returns_adds_the_row_update_correlations_adds() -> None:
    """observe_returns leaves the monitor as update_correlations does; with an observer
    attached it still announces the summary, and a bad row is refused the same way."""
    rows = [({BTC: 0.01 * math.sin(i), ETH: 0.02 * math.cos(i)}, 1_000 + i) for i in range(40)]
    told, silent = portfolio(), portfolio(observer=None, enable_metrics=False)
    recorder = RecordingObserver()
    watched = portfolio(observer=recorder)
    for returns, ts in rows:
        told.update_correlations(returns, ts)
        silent.observe_returns(returns, ts)
        watched.observe_returns(returns, ts)
    assert silent.correlations.export_state() == told.correlations.export_state()
    assert watched.correlations.stats() == told.correlations.stats()
    updates = [e for e in recorder.events if isinstance(e, CorrelationUpdated)]
    assert len(updates) == len(rows)
    assert updates[-1].max_abs_correlation == told.correlations.stats()["max_abs_correlation"]
    with pytest.raises(InvalidReturnsException, match=r"returns\[ETH-USD\]"):
        watched.observe_returns({BTC: 0.01, ETH: math.nan}, timestamp_ns=2_000)
    assert isinstance(recorder.events[-1], InputRejected)
    assert watched.correlations.export_state() == told.correlations.export_state()


def test_state_round_trip_gives_same_next_allocation() -> None:
    """export_state / restore_state on a fresh allocator reproduces the next allocation."""
    a = portfolio()
    correlated_history(a)
    a.process_multi_strategy_signals(user_signals(), calm(), PRICES)
    b = portfolio()
    b.restore_state(json.loads(json.dumps(a.export_state())))
    nxt = [*user_signals(), make_signal(strategy_id="x", symbol=SOL, action="HOLD")]
    ra = a.process_multi_strategy_signals(nxt, calm(), PRICES)
    rb = b.process_multi_strategy_signals(nxt, calm(), PRICES)
    assert ra.allocations == rb.allocations
    assert ra.drifted_strategies == rb.drifted_strategies


def test_adding_a_sell_with_another_regime_never_increases_the_long() -> None:
    """A SELL signal (shorts disabled) whose regime differs cannot enlarge the symbol's long."""
    buy = make_signal(strategy_id="a", confidence=0.5, expected_return=0.01, regime="RANGING")
    sell = make_signal(strategy_id="b", action="SELL", regime="TRENDING_UP")
    alone = portfolio().process_multi_strategy_signals([buy], calm(), PRICES)
    both = portfolio().process_multi_strategy_signals([buy, sell], calm(), PRICES)
    assert both.allocations[BTC] <= alone.allocations[BTC] + 1e-9


@pytest.mark.parametrize("value", [1e300, 1.0000001e13, 0.0, math.nan])
def test_portfolio_value_is_bounded_like_the_config(value: float) -> None:
    """The constructor and set_portfolio_value accept 0 < x <= 1e13 only (named)."""
    from himari_l3 import InvalidPriceException

    with pytest.raises(InvalidPriceException, match="portfolio_value"):
        portfolio(portfolio_value=value)
    with pytest.raises(InvalidPriceException, match="portfolio_value"):
        portfolio().set_portfolio_value(value)


def test_a_signal_stamped_beyond_the_skew_is_rejected_with_its_reason() -> None:
    """portfolio.max_signal_clock_skew_sec (60 s): a signal stamped 61 s ahead of the clock
    is left out (FUTURE_TIMESTAMP) — it would otherwise win every duplicate resolution of
    its key — while one 59 s ahead and an old one are sized."""
    p = portfolio()
    now = p.clock.time_ns()
    future = make_signal(strategy_id="a", timestamp_ns=now + 61 * 10**9, confidence=0.99)
    real = make_signal(strategy_id="a", timestamp_ns=now - 10**9, confidence=0.6)
    soon = make_signal(strategy_id="b", symbol=ETH, timestamp_ns=now + 59 * 10**9)
    alloc = p.process_multi_strategy_signals([future, real, soon], make_cascade(), PRICES)
    assert [(r["index"], r["code"]) for r in alloc.rejected_signals] == [
        (0, "FUTURE_TIMESTAMP")]
    assert "expected at most" in alloc.rejected_signals[0]["reason"]
    assert sorted(alloc.allocations) == [BTC, ETH]
    signals = {(s["strategy_id"], s["symbol"]) for s in alloc.trace["signals"]}
    assert signals == {("a", BTC), ("b", ETH)}


@pytest.mark.parametrize("price", [1e308, 5e-324, 1.01e12])
def test_a_price_outside_the_accepted_range_rejects_its_signals(price: float) -> None:
    """Batch prices are bounded like Phase 1's (1e-12 <= price <= 1e12): INVALID_PRICE."""
    alloc = portfolio().process_multi_strategy_signals(
        [make_signal(), make_signal(symbol=ETH)], make_cascade(), {**PRICES, BTC: price})
    assert [r["code"] for r in alloc.rejected_signals] == ["INVALID_PRICE"]
    assert "1e-12 <= price <= 1e+12" in alloc.rejected_signals[0]["reason"]
    assert sorted(alloc.allocations) == [ETH]
