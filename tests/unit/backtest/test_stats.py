"""Backtest statistics: closed-form values and invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from himari_l3.backtest.data import infer_periods_per_year
from himari_l3.backtest.stats import (
    annualized_return,
    annualized_volatility,
    calmar_ratio,
    drawdown_series,
    hit_rate,
    max_drawdown,
    permutation_p_value,
    sharpe_ratio,
    sortino_ratio,
    summarize,
    total_return,
)

HOUR_MS = 3_600_000


def test_constant_returns_have_no_sharpe_and_exact_growth() -> None:
    """Constant returns: zero volatility, undefined Sharpe/Sortino, compounding total."""
    r = np.full(8, 0.25)  # exactly representable
    assert annualized_volatility(r, 8760) == 0.0
    assert math.isnan(sharpe_ratio(r, 8760))
    assert math.isnan(sortino_ratio(r, 8760))
    equity = 100.0 * np.cumprod(1.0 + r)
    assert total_return(equity, 100.0) == pytest.approx(1.25**8 - 1.0, rel=1e-12)
    assert max_drawdown(equity, 100.0) == 0.0


def test_sharpe_closed_form_uses_ddof1_and_sqrt_periods() -> None:
    """Sharpe = mean / sample std * sqrt(P)."""
    r = np.array([0.01, -0.01, 0.02, 0.0])
    mean, sd = 0.005, math.sqrt(((0.005**2) + 0.015**2 + 0.015**2 + 0.005**2) / 3)
    assert sharpe_ratio(r, 8760) == pytest.approx(mean / sd * math.sqrt(8760), rel=1e-12)
    assert annualized_volatility(r, 8760) == pytest.approx(sd * math.sqrt(8760), rel=1e-12)


def test_sortino_uses_downside_deviation_about_zero() -> None:
    """Sortino = mean / sqrt(mean(min(r,0)^2)) * sqrt(P)."""
    r = np.array([0.02, -0.01, 0.03, -0.02])
    dd = math.sqrt((0.01**2 + 0.02**2) / 4)
    assert sortino_ratio(r, 365) == pytest.approx(0.005 / dd * math.sqrt(365), rel=1e-12)


def test_known_drawdown_and_calmar() -> None:
    """Peak 120 to trough 90 is a 25 % drawdown; Calmar divides by its magnitude."""
    equity = np.array([120.0, 90.0, 130.0, 117.0])
    dd = drawdown_series(equity, 100.0)
    np.testing.assert_allclose(dd, [0.0, -0.25, 0.0, -0.1], atol=1e-15)
    assert max_drawdown(equity, 100.0) == pytest.approx(-0.25)
    assert calmar_ratio(0.1, -0.25) == pytest.approx(0.4)
    assert math.isnan(calmar_ratio(0.1, 0.0))


def test_drawdown_counts_a_loss_below_initial_capital() -> None:
    """The initial capital is the first peak."""
    assert max_drawdown(np.array([80.0, 90.0]), 100.0) == pytest.approx(-0.2)


def test_annualized_return_is_geometric() -> None:
    """Half a year of 21 % is 46.41 % a year; ruin is -100 %."""
    assert annualized_return(0.21, 4380, 8760) == pytest.approx(1.21**2 - 1.0)
    assert annualized_return(-1.0, 10, 8760) == -1.0


def test_hit_rate_counts_only_bars_entered_with_a_position() -> None:
    """Bars without a position carried in are ignored."""
    r = np.array([0.01, -0.02, 0.03, 0.04])
    held = np.array([0.0, 0.5, 0.5, 0.0])
    assert hit_rate(r, held) == pytest.approx(0.5)
    assert math.isnan(hit_rate(r, np.zeros(4)))


def test_summarize_recomputes_returns_from_equity() -> None:
    """summarize() turnover, exposure and return fields match hand values."""
    equity = np.array([101.0, 99.99, 102.0])
    out = summarize(equity, 100.0, np.array([0.5, 0.0, 0.25]), np.array([0.5, 0.5, 0.0]), 12.0)
    assert out["total_return"] == pytest.approx(0.02)
    assert out["turnover_total"] == pytest.approx(0.75)
    assert out["turnover_annualized"] == pytest.approx(0.25 * 12)
    assert out["average_exposure"] == pytest.approx(1.0 / 3)
    r = np.array([0.01, 99.99 / 101.0 - 1.0, 102.0 / 99.99 - 1.0])
    assert out["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(12))
    assert out["hit_rate"] == pytest.approx(0.5)


@pytest.mark.parametrize(("step_ms", "expected"),
                         [(HOUR_MS, 8760.0), (24 * HOUR_MS, 365.0), (HOUR_MS // 4, 35040.0)])
def test_periods_per_year_for_a_24_7_market(step_ms: int, expected: float) -> None:
    """Hourly bars give 8760 periods a year (sqrt(8760) annualisation)."""
    ts = np.arange(50, dtype=np.int64) * step_ms + 1_700_000_000_000
    assert infer_periods_per_year(ts) == expected


def test_periods_per_year_uses_the_median_spacing() -> None:
    """A few gaps do not change the inferred frequency."""
    ts = np.array([0, 1, 2, 5, 6, 7, 8], dtype=np.int64) * HOUR_MS
    assert infer_periods_per_year(ts) == 8760.0


def test_p_value_extremes() -> None:
    """Beating every shuffle gives 1/(N+1); losing to all gives 1."""
    assert permutation_p_value(2.0, [0.1, -0.3, 1.9, 0.0]) == pytest.approx(1 / 5)
    assert permutation_p_value(-1.0, [0.1, -0.3, 1.9, 0.0]) == 1.0
    assert permutation_p_value(0.0, [0.0]) == 1.0  # ties count against the strategy


def test_p_value_nan_handling_is_conservative() -> None:
    """A NaN shuffled Sharpe counts as >=; a NaN actual Sharpe gives p = 1."""
    assert permutation_p_value(1.0, [math.nan, 0.0]) == pytest.approx(2 / 3)
    assert permutation_p_value(math.nan, [0.0, 0.1]) == 1.0


@given(st.floats(-10, 10), st.lists(st.floats(-10, 10) | st.just(math.nan), max_size=50))
def test_p_value_is_bounded(actual: float, shuffled: list[float]) -> None:
    """1/(N+1) <= p <= 1 for any inputs."""
    p = permutation_p_value(actual, shuffled)
    assert 1.0 / (len(shuffled) + 1) - 1e-15 <= p <= 1.0
