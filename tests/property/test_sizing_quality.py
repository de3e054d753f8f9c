"""Sizing quality against the planted Kelly optimum (issue #15), seeded and fast: the key
claims of bench/bench_sizing_quality.py on a few seeds, through the real Layer3Phase1."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from himari_l3.config.schema import KellyConfig, SizingConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import bench_sizing_quality as bench

DEFAULT = SizingConfig()
COIN = bench.EDGE[0]  # p = 0.55, +1 / -1 move scales


def _cell(strategy: bench.Strategy, scale: float, variant: str, feedback: str, seeds: int,
          trades: int, config: SizingConfig = DEFAULT) -> dict[str, Any]:
    runs = [bench.simulate(strategy, scale, variant, feedback, seed, trades, config)
            for seed in range(seeds)]
    return bench.summarise(strategy, scale, runs, config)


@pytest.mark.parametrize("scale", bench.SCALES)
def test_growth_after_learning_reaches_the_quarter_kelly_target(scale: float) -> None:
    """Calibrated coin 55/45: over trades 2,001-3,000 the realised and the expected log
    growth are >= 0.8 of g(min(0.25 f*, cap)) (6 seeds)."""
    cell = _cell(COIN, scale, "calibrated", "every", seeds=6, trades=3_000)
    assert cell["growth_ratio"] >= 0.8
    assert cell["expected_growth_ratio"] >= 0.8
    assert cell["max_size_over_f_star"] <= 1.0  # never above full Kelly


def test_binary_model_misses_the_target() -> None:
    """The growth check can fail: the stake-as-notional binary model realises a small
    fraction of the target at 2 % moves."""
    binary = SizingConfig(kelly=KellyConfig(model="binary"))
    cell = _cell(COIN, 0.02, "calibrated", "every", seeds=2, trades=3_000, config=binary)
    assert cell["expected_growth_ratio"] < 0.5


@pytest.mark.parametrize("strategy", bench.EDGE, ids=lambda s: s.name)
def test_no_lockout_with_traded_only_feedback(strategy: bench.Strategy) -> None:
    """Only executed trades are fed back: every edge strategy still bets after 1,500 trades
    in all 10 seeds, and exploration did the work where the estimate dipped."""
    cell = _cell(strategy, 0.2, "calibrated", "traded", seeds=10, trades=1_500)
    assert cell["betting_at_end"] == 1.0
    assert cell["exploring_share"] > 0.0


def test_binary_model_locks_out() -> None:
    """The lock-out check can fail: the binary model stops betting on coin 55/45 for good in
    most seeds once only executed trades are fed back."""
    binary = SizingConfig(kelly=KellyConfig(model="binary"))
    cell = _cell(COIN, 0.2, "calibrated", "traded", seeds=10, trades=1_500, config=binary)
    assert cell["betting_at_end"] <= 0.5


@pytest.mark.parametrize("feedback", bench.FEEDBACK)
@pytest.mark.parametrize("scale", bench.SCALES)
def test_losing_strategy_stays_tiny_after_1000_trades(scale: float, feedback: str) -> None:
    """A strategy Layer 2 reports as coin 55/45 but which loses (p = 0.45): after 1,000
    trades its size never exceeds 0.1 % of equity (4 seeds)."""
    cell = _cell(bench.LOSER, scale, "calibrated", feedback, seeds=4, trades=1_500)
    assert cell["size_after_1000_max"] <= 0.001


@pytest.mark.parametrize("variant", ["overconfident", "overstated"])
def test_miscalibrated_reports_are_learned_away(variant: str) -> None:
    """After learning (trades 2,001-3,000) a size under an overconfident report is at most
    1.25x the calibrated one (4 seeds, 20 % moves)."""
    calibrated = _cell(COIN, 0.2, "calibrated", "every", seeds=4, trades=3_000)
    loud = _cell(COIN, 0.2, variant, "every", seeds=4, trades=3_000)
    assert loud["size_late_mean"] <= 1.25 * calibrated["size_late_mean"]
