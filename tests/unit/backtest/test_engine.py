"""Replay engine: accounting in closed form, no look-ahead, learning during the replay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import write_ohlcv_csv
from himari_l3.backtest import Phase1Policy, make_policy
from himari_l3.backtest.data import MarketData, align_bars, load_bars
from himari_l3.backtest.engine import ExecutionSetup, Replay, replay
from himari_l3.backtest.signals import SignalTape, reference_signals
from himari_l3.book import MarketRules, Markets
from himari_l3.config.schema import Layer3Config, parse_config
from himari_l3.contracts import CascadeIndicators, TacticalSignal

H = 3_600_000


def _write_bars(path: Path, n: int, seed: int, *, tail_from: int | None = None) -> Path:
    """Random-walk OHLCV; with ``tail_from`` every bar from there on is rewritten."""
    rng = np.random.default_rng(seed)
    r = rng.normal(0.0, 0.008, n)
    vol_arr = rng.uniform(50, 150, n)
    if tail_from is not None:
        r[tail_from:] = np.random.default_rng(seed + 1000).normal(0.001, 0.03, n - tail_from)
        vol_arr[tail_from:] *= 9.0
    return write_ohlcv_csv(path, (30_000.0 * np.exp(np.cumsum(r))).tolist(), vol_arr.tolist())


def _market(path: Path) -> MarketData:
    return align_bars([load_bars(path)])


class _HalfLong:
    """Test policy: 50 % of equity long at every bar."""

    name = "half_long"

    def mark(self, t: int, timestamp_ns: int, asset_returns: dict[str, float]) -> None:
        pass

    def targets(self, t: int, timestamp_ns: int, signals: tuple[TacticalSignal, ...],
                cascade: dict[str, CascadeIndicators], prices: dict[str, float],
                equity: float, positions: dict[str, float]) -> dict[str, float]:
        return {"X": 0.5 * equity}

    def state(self) -> dict[str, Any]:
        return {}


def _free_setup(band: float = 0.0, **fill_model: float) -> ExecutionSetup:
    """Caps at 100 %, no no-trade band (or ``band`` x equity), a fill model of 8 bps fee
    and 2 bps slippage (no impact): the replay trades exactly to the policy's targets."""
    caps = {"max_position_pct": 1.0, "max_strategy_pct": 1.0, "max_portfolio_pct": 1.0,
            "max_net_pct": 1.0, "max_leverage": 1.0}
    cfg = parse_config(Layer3Config, {
        "sizing": {"limits": {"max_position_pct": 1.0}}, "portfolio": caps,
        # Intents live a day (the default 5 minutes expire before an hourly bar's latency).
        "execution": {"no_trade_band_pct": band, "no_trade_band_usd": 0.0,
                      "intent_ttl_sec": 86_400.0,
                      "fill_model": {"fee_bps": 8.0, "slippage_bps": 2.0, "impact_bps": 0.0,
                                     **fill_model}}})
    return ExecutionSetup(cfg)


def test_accounting_matches_hand_computation() -> None:
    """Cash, quantity, fill prices (slippage), fees, equity, traded notional, turnover and
    exposure follow the documented recursion on a three-bar series."""
    ts = np.array([0, H, 2 * H], dtype=np.int64)
    close = np.array([[100.0], [110.0], [99.0]])
    market = MarketData(("X",), (), ts, close)
    tape = SignalTape(((), (), ()), ({}, {}, {}), "none")
    rep = replay(market, tape, _HalfLong(), initial_capital=1000.0, execution=_free_setup())
    cash, q = 1000.0, 0.0
    exp_eq, exp_turn, exp_traded, exp_cost, exp_fee = [], [], [], [], []
    for c in (100.0, 110.0, 99.0):
        pre = cash + q * c
        dq = 0.5 * pre / c - q
        p = c * (1 + 2e-4 * (1 if dq > 0 else -1))
        fee = abs(dq) * p * 8e-4
        cash -= dq * p + fee
        q += dq
        exp_eq.append(cash + q * c)
        exp_traded.append(abs(dq) * p)
        exp_turn.append(abs(dq) * p / pre)
        exp_fee.append(fee)
        exp_cost.append(fee + abs(dq) * abs(p - c))
    np.testing.assert_allclose(rep.equity, exp_eq, rtol=1e-12)
    np.testing.assert_allclose(rep.traded_usd, exp_traded, rtol=1e-12)
    np.testing.assert_allclose(rep.turnover, exp_turn, rtol=1e-12)
    np.testing.assert_allclose(rep.fees, exp_fee, rtol=1e-12)
    np.testing.assert_allclose(rep.costs, exp_cost, rtol=1e-12)
    np.testing.assert_allclose(rep.exposure, rep.positions[:, 0] / rep.equity, rtol=1e-13)
    assert list(rep.fills) == [1, 1, 1] and list(rep.trading_state) == [0, 0, 0]
    assert rep.equity[0] == pytest.approx(1000 - 5 * 100.02 * 8e-4 - 5 * 0.02)


def test_latency_and_participation_delay_and_split_the_fills(tmp_path: Path) -> None:
    """latency_bars 1: bar 0's intent fills at bar 1's close (a 10 % band keeps the next
    bar's re-plan from superseding it); a 10 % participation cap on small volumes splits a
    fill over bars (GTC: the rest waits)."""
    ts = np.array([0, H, 2 * H], dtype=np.int64)
    market = MarketData(("X",), (), ts, np.array([[100.0], [104.0], [99.0]]))
    tape = SignalTape(((), (), ()), ({}, {}, {}), "none")
    rep = replay(market, tape, _HalfLong(), initial_capital=1000.0,
                 execution=_free_setup(band=0.1, latency_bars=1))
    assert list(rep.fills) == [0, 1, 0] and rep.positions[0, 0] == 0.0
    assert rep.positions[1, 0] == pytest.approx(500.0 / 100.0 * 104.0)
    path = write_ohlcv_csv(tmp_path / "x_usd_1h.csv", [100.0, 100.0, 100.0, 100.0],
                           [10.0, 10.0, 10.0, 10.0])
    thin = align_bars([load_bars(path, "X")])
    quiet = SignalTape(((),) * 4, ({},) * 4, "none")
    rep = replay(thin, quiet, _HalfLong(), initial_capital=1000.0, execution=_free_setup())
    # Target 5 units; at most 1 unit (10 % of 10) fills per bar.
    units = rep.positions[:, 0] / 100.0
    np.testing.assert_allclose(units, [1.0, 2.0, 3.0, 4.0], rtol=1e-9)


def test_instrument_rules_round_and_drop(tmp_path: Path) -> None:
    """A lot of 0.5 units rounds the target toward zero; a minimum notional larger than
    the order drops it (counted by reason)."""
    ts = np.array([0, H], dtype=np.int64)
    market = MarketData(("X",), (), ts, np.array([[100.0], [100.0]]))
    tape = SignalTape(((), ()), ({}, {}), "none")
    lot = Markets({"X": MarketRules("X", step_size=0.5)})
    setup = _free_setup()
    rep = replay(market, tape, _HalfLong(), initial_capital=1030.0,
                 execution=ExecutionSetup(setup.config, lot))
    assert rep.positions[0, 0] == pytest.approx(500.0)  # 5.15 units -> 5.0
    big = Markets({"X": MarketRules("X", min_notional=10_000.0)})
    rep = replay(market, tape, _HalfLong(), initial_capital=1000.0,
                 execution=ExecutionSetup(setup.config, big))
    assert rep.positions[:, 0].tolist() == [0.0, 0.0]
    assert rep.execution["dropped_intents"] == {"below_min_notional": 2}


class _Crash(_HalfLong):
    """Test policy: 90 % long (the trading states must stop it on a 40 % crash)."""

    def targets(self, *args: Any) -> dict[str, float]:
        return {"X": 0.9 * args[5]}


def test_trading_states_halt_on_the_drawdown_and_the_operator_resumes() -> None:
    """A 40 % crash: the daily loss halts the portfolio (the book flattens it); the
    stand-in operator resumes it 24 h later; without one it stays halted."""
    n = 60
    ts = np.arange(n, dtype=np.int64) * H
    close = np.array([[100.0]] * 10 + [[60.0]] * (n - 10))
    market = MarketData(("X",), (), ts, close)
    tape = SignalTape(((),) * n, ({},) * n, "none")
    setup = _free_setup()
    rep = replay(market, tape, _Crash(), initial_capital=1000.0, execution=setup)
    assert rep.trading_state[10] == 2 and rep.positions[10, 0] == 0.0
    # Resumed at the end of bar 34 (24 h after bar 10), back in at bar 35.
    assert rep.trading_state[34] == 0 and rep.positions[35, 0] > 0
    reasons = [(r["to"], r["reason"]) for r in rep.execution["transitions"]]
    assert reasons[:2] == [("HALTED", "daily_loss"), ("ACTIVE", "manual")]
    never = ExecutionSetup(setup.config, resume_after_hours=None)
    rep = replay(market, tape, _Crash(), initial_capital=1000.0, execution=never)
    assert set(rep.trading_state[10:].tolist()) == {2} and rep.positions[-1, 0] == 0.0


def test_rejects_non_finite_targets_and_mismatched_tape() -> None:
    """A NaN target or a tape of the wrong length is an error, not a silent zero."""
    ts = np.array([0, H, 2 * H], dtype=np.int64)
    market = MarketData(("X",), (), ts, np.array([[1.0], [1.0], [1.0]]))

    class _Nan(_HalfLong):
        def targets(self, *args: Any) -> dict[str, float]:
            return {"X": float("nan")}

    tape = SignalTape(((), (), ()), ({}, {}, {}), "none")
    with pytest.raises(ValueError, match="finite USD target"):
        replay(market, tape, _Nan())
    with pytest.raises(ValueError, match="signal tape has 2 bars"):
        replay(market, SignalTape(((), ()), ({}, {}), "none"), _HalfLong())


def _phase_policies() -> list[str]:
    return ["fixed_fraction", "phase1", "phase2", "phase3"]


def _policy_or_skip(name: str) -> Any:
    if name in ("phase2", "phase3"):
        pytest.importorskip(f"himari_l3.{name}")
    return make_policy(name, 100_000.0, rl="mock" if name == "phase3" else "off", seed=7)


def _run(path: Path, name: str) -> Replay:
    market = _market(path)
    return replay(market, reference_signals(market), _policy_or_skip(name),
                  fees_bps=5.0, slippage_bps=2.0)


@pytest.mark.parametrize("name", _phase_policies())
def test_no_look_ahead_future_bars_do_not_change_past_positions(tmp_path: Path,
                                                                name: str) -> None:
    """Rewriting all bars after t (prices and volume) leaves every position, trade and
    equity value up to t bit-identical, for every policy."""
    t, n = 300, 420
    base = _run(_write_bars(tmp_path / "a" / "btc_usdt_1h.csv", n, 11), name)
    alt = _run(_write_bars(tmp_path / "b" / "btc_usdt_1h.csv", n, 11, tail_from=t + 1), name)
    assert np.count_nonzero(base.positions[: t + 1]) > 0, "nothing was traded: weak test"
    np.testing.assert_array_equal(base.positions[: t + 1], alt.positions[: t + 1])
    np.testing.assert_array_equal(base.equity[: t + 1], alt.equity[: t + 1])
    np.testing.assert_array_equal(base.traded_usd[: t + 1], alt.traded_usd[: t + 1])
    assert not np.array_equal(base.equity[t + 2:], alt.equity[t + 2:])


def test_no_look_ahead_truncated_history_gives_the_same_positions(tmp_path: Path) -> None:
    """Replaying only bars 0..t reproduces the full replay's first t+1 decisions."""
    t = 250
    full_path = _write_bars(tmp_path / "btc_usdt_1h.csv", 400, 12)
    cut = tmp_path / "cut" / "btc_usdt_1h.csv"
    cut.parent.mkdir()
    cut.write_text("\n".join(full_path.read_text().splitlines()[: t + 2]) + "\n")
    full, part = _run(full_path, "phase1"), _run(cut, "phase1")
    assert len(part.equity) == t + 1
    np.testing.assert_array_equal(full.positions[: t + 1], part.positions)
    np.testing.assert_array_equal(full.equity[: t + 1], part.equity)


def test_phase1_learns_from_every_directional_signal(tmp_path: Path) -> None:
    """Kelly and conformal state grow with the realised outcomes of the replay."""
    market = _market(_write_bars(tmp_path / "btc_usdt_1h.csv", 300, 13))
    tape = reference_signals(market)
    policy = Phase1Policy(100_000.0)
    rep = replay(market, tape, policy)
    directional = sum(1 for bar in tape.signals[:-1] for s in bar if s.action.direction)
    assert rep.learned["outcomes_fed"] == directional > 0
    n_kelly = sum(st.n for st in policy.sizer.kelly.stats_.values())
    assert n_kelly == directional
    assert policy.sizer.conformal.states_


def test_phase3_records_outcomes_by_path(tmp_path: Path) -> None:
    """Phase 3 with mock RL gets record_outcome for held symbols (RL vs baseline)."""
    pytest.importorskip("himari_l3.phase3")
    rep = _run(_write_bars(tmp_path / "btc_usdt_1h.csv", 300, 14), "phase3")
    comp = rep.learned["get_performance_comparison"]
    assert comp["rl"]["trades"] + comp["baseline"]["trades"] > 0
    assert rep.learned["outcomes_fed"] > 0


def test_mock_rl_replay_is_reproducible(tmp_path: Path) -> None:
    """The same seed gives the same Phase 3 mock-RL replay."""
    pytest.importorskip("himari_l3.phase3")
    path = _write_bars(tmp_path / "btc_usdt_1h.csv", 200, 15)
    a, b = _run(path, "phase3"), _run(path, "phase3")
    np.testing.assert_array_equal(a.equity, b.equity)
