"""Unit tests of the fill model's formulas: closed-form prices, fees, impact and noise."""

from __future__ import annotations

import math
import statistics

import pytest

from himari_l3.config.schema import FillModelConfig
from himari_l3.fills import FillModel


def model(**kw: float) -> FillModel:
    """A fill model with config overrides."""
    return FillModel(FillModelConfig(**kw))


def test_defaults_are_documented_values() -> None:
    """5 bps fee, 2 bps slippage, 10 bps x sqrt(participation) impact, 10 % cap, no noise."""
    c = FillModel().config
    assert (c.fee_bps, c.slippage_bps, c.impact_bps, c.impact_exponent) == (5.0, 2.0, 10.0, 0.5)
    assert (c.max_participation, c.slippage_noise_bps, c.latency_sec, c.latency_bars) == (
        0.1, 0.0, 0.0, 0)


def test_slippage_closed_form() -> None:
    """s = s0 + k (q/V)^beta: 2 + 10 * sqrt(25/100) = 7 bps; no volume, no impact."""
    m = FillModel()
    assert m.slippage_bps(25.0, 100.0, "o", 0) == pytest.approx(7.0)
    assert m.slippage_bps(25.0, None, "o", 0) == 2.0
    assert model(impact_exponent=1.0).slippage_bps(25.0, 100.0, "o", 0) == pytest.approx(4.5)


def test_price_moves_against_the_order_and_fee_is_on_the_fill_notional() -> None:
    """A buy pays P(1+s), a sell receives P(1-s); fee = q p fee_bps / 1e4."""
    m = FillModel()
    assert m.fill_price(+1, 100.0, 7.0) == pytest.approx(100.07)
    assert m.fill_price(-1, 100.0, 7.0) == pytest.approx(99.93)
    assert m.fee(2.0, 100.07) == pytest.approx(2 * 100.07 * 5 / 1e4)


def test_capacity_is_participation_of_volume_or_unbounded() -> None:
    """10 % of the observation's volume; unknown volume: no cap."""
    assert FillModel().capacity(50.0) == pytest.approx(5.0)
    assert FillModel().capacity(None) == math.inf


def test_noise_is_a_reproducible_standard_normal_per_order_and_fill() -> None:
    """Same (seed, order, fill number) -> same draw; draws look standard normal; another
    seed gives other draws."""
    m, other = model(slippage_noise_bps=3.0), model(slippage_noise_bps=3.0, seed=1)
    assert m.noise("abc", 2) == m.noise("abc", 2)
    assert m.noise("abc", 2) != m.noise("abc", 3) != m.noise("abd", 2)
    assert m.noise("abc", 2) != other.noise("abc", 2)
    draws = [m.noise(f"o{i}", 0) for i in range(4000)]
    assert abs(statistics.fmean(draws)) < 0.06
    assert statistics.stdev(draws) == pytest.approx(1.0, abs=0.05)


def test_noise_never_gives_price_improvement() -> None:
    """s = max(0, ...): a large negative draw floors at zero slippage."""
    m = model(slippage_bps=0.0, impact_bps=0.0, slippage_noise_bps=50.0)
    slips = [m.slippage_bps(1.0, None, f"o{i}", 0) for i in range(200)]
    assert min(slips) == 0.0 and max(slips) > 0.0
