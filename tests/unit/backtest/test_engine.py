"""Replay engine: accounting in closed form, no look-ahead, learning during the replay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import write_ohlcv_csv
from himari_l3.backtest import Phase1Policy, make_policy
from himari_l3.backtest.data import MarketData, align_bars, load_bars
from himari_l3.backtest.engine import Replay, replay
from himari_l3.backtest.signals import SignalTape, reference_signals
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


def test_accounting_matches_hand_computation() -> None:
    """Equity, drift, traded notional, fees, turnover and exposure follow the documented
    recursion on a three-bar series."""
    ts = np.array([0, H, 2 * H], dtype=np.int64)
    close = np.array([[100.0], [110.0], [99.0]])
    market = MarketData(("X",), (), ts, close)
    tape = SignalTape(((), (), ()), ({}, {}, {}), "none")
    rep = replay(market, tape, _HalfLong(), initial_capital=1000.0, fees_bps=8.0,
                 slippage_bps=2.0)
    c, eq, pos = 10 / 1e4, 1000.0, 0.0
    exp_eq, exp_turn, exp_traded = [], [], []
    for a in (None, 0.1, -0.1):
        if a is not None:
            eq += pos * a
            pos *= 1 + a
        traded = abs(0.5 * eq - pos)
        exp_turn.append(traded / eq)
        eq -= traded * c
        pos = 0.5 * (eq + traded * c)
        exp_eq.append(eq)
        exp_traded.append(traded)
    np.testing.assert_allclose(rep.equity, exp_eq, rtol=1e-13)
    np.testing.assert_allclose(rep.traded_usd, exp_traded, rtol=1e-13)
    np.testing.assert_allclose(rep.turnover, exp_turn, rtol=1e-13)
    np.testing.assert_allclose(rep.costs, np.array(exp_traded) * c, rtol=1e-13)
    np.testing.assert_allclose(rep.exposure, rep.positions[:, 0] / rep.equity, rtol=1e-13)
    assert rep.equity[0] == pytest.approx(999.5)


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
