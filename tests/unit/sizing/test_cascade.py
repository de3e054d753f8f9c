"""Cascade risk: components, weighted score, strict ">" band boundaries."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from conftest import cascade_indicators, make_cascade, make_engine, make_signal
from himari_l3 import CascadeIndicators, CascadeRecommendation, InvalidCascadeIndicatorsException
from himari_l3.config.schema import CascadeConfig, CascadeThresholds, CascadeWeights
from himari_l3.sizing.cascade import assess_cascade

DEFAULT = CascadeConfig()
EXIT, R75, R50, MON = (CascadeRecommendation.EXIT, CascadeRecommendation.REDUCE_75,
                       CascadeRecommendation.REDUCE_50, CascadeRecommendation.MONITOR)

# Dyadic thresholds, weights and bands: every score below is exact in binary floating point,
# so the boundaries can be tested with equality.
DYADIC = CascadeConfig(
    thresholds=CascadeThresholds(funding_rate=0.5, oi_drop=0.5, volume_ratio=3.0,
                                 whale_pressure=0.5, netflow_zscore=4.0),
    weights=CascadeWeights(funding_rate=0.25, oi_drop=0.25, volume_ratio=0.25,
                           whale_pressure=0.25, netflow_zscore=0.0),
    exit_above=0.75, reduce_75_above=0.5, reduce_50_above=0.25,
)
TINY = 2.0**-20


def _dyadic(saturated: int, extra_whale: float = 0.0) -> CascadeIndicators:
    """`saturated` of funding / OI drop / volume at their thresholds, whale pressure extra."""
    return CascadeIndicators(
        funding_rate=0.5 if saturated >= 1 else 0.0,
        oi_change_pct=-0.5 if saturated >= 2 else 0.0,
        volume_ratio=3.0 if saturated >= 3 else 1.0,
        onchain_whale_pressure=extra_whale,
        exchange_netflow_zscore=0.0,
    )


def test_default_weights_and_bands() -> None:
    """Defaults: weights 0.20/0.25/0.15/0.25/0.15, bands 0.8 / 0.6 / 0.4."""
    w = DEFAULT.weights
    assert (w.funding_rate, w.oi_drop, w.volume_ratio, w.whale_pressure,
            w.netflow_zscore) == (0.20, 0.25, 0.15, 0.25, 0.15)
    assert (DEFAULT.exit_above, DEFAULT.reduce_75_above, DEFAULT.reduce_50_above) == (
        0.8, 0.6, 0.4)


def test_components_half_way_to_thresholds() -> None:
    """Each component is its reading over its threshold: half-way readings give 0.5."""
    a = assess_cascade(DEFAULT, make_cascade(funding_rate=0.0005, oi_change_pct=-0.05,
                                             volume_ratio=2.0, onchain_whale_pressure=0.4,
                                             exchange_netflow_zscore=1.5))
    assert a.components == pytest.approx({"funding_rate": 0.5, "oi_drop": 0.5,
                                          "volume_ratio": 0.5, "whale_pressure": 0.5,
                                          "netflow_zscore": 0.5})
    assert a.score == pytest.approx(0.5)
    assert a.recommendation is R50 and a.multiplier == 0.5


def test_component_signs() -> None:
    """Funding counts both signs; OI rises, low volume and outflows count as zero."""
    a = assess_cascade(DEFAULT, make_cascade(funding_rate=-0.0005, oi_change_pct=0.3,
                                             volume_ratio=0.2, exchange_netflow_zscore=-4.0))
    assert a.components["funding_rate"] == pytest.approx(0.5)
    assert a.components["oi_drop"] == a.components["volume_ratio"] == 0.0
    assert a.components["netflow_zscore"] == 0.0


def test_components_saturate_at_one() -> None:
    """Extreme readings saturate every component at 1: score 1, EXIT, multiplier 0."""
    a = assess_cascade(DEFAULT, CascadeIndicators(1.0, -1.0, 1000.0, 1.0, 50.0))
    assert set(a.components.values()) == {1.0}
    assert a.score == 1.0 and a.recommendation is EXIT and a.multiplier == 0.0


def test_calm_is_monitor() -> None:
    """CascadeIndicators.calm() scores 0.02 (funding 0.0001 of 0.001, weight 0.2): MONITOR."""
    a = assess_cascade(DEFAULT, CascadeIndicators.calm())
    assert a.score == pytest.approx(0.02) and a.recommendation is MON and a.multiplier == 1.0


@pytest.mark.parametrize(("saturated", "rec", "keep"), [
    (0, MON, 1.0), (1, MON, 1.0), (2, R50, 0.5), (3, R75, 0.25),
])
def test_score_exactly_on_a_band_edge_stays_in_the_lower_band(saturated: int,
                                                              rec: CascadeRecommendation,
                                                              keep: float) -> None:
    """Bands use strict ">": a score equal to a threshold is not above it."""
    a = assess_cascade(DYADIC, _dyadic(saturated))
    assert a.score == 0.25 * saturated
    assert a.recommendation is rec and a.multiplier == keep


@pytest.mark.parametrize(("saturated", "rec", "keep"), [
    (1, R50, 0.5), (2, R75, 0.25), (3, EXIT, 0.0),
])
def test_score_just_above_a_band_edge_moves_up(saturated: int, rec: CascadeRecommendation,
                                               keep: float) -> None:
    """A score one tiny step above a threshold is in the higher band."""
    a = assess_cascade(DYADIC, _dyadic(saturated, extra_whale=TINY))
    assert a.score == 0.25 * saturated + 0.25 * 2 * TINY
    assert a.recommendation is rec and a.multiplier == keep


def test_default_bands_around_edges() -> None:
    """With default weights: whale alone saturated (0.25) is MONITOR; plus OI drop (0.5) is
    REDUCE_50; plus funding (0.7) is REDUCE_75; plus netflow (0.85) is EXIT."""
    base = {"onchain_whale_pressure": 0.8, "funding_rate": 0.0}
    steps = [({}, MON), ({"oi_change_pct": -0.10}, R50),
             ({"oi_change_pct": -0.10, "funding_rate": 0.001}, R75),
             ({"oi_change_pct": -0.10, "funding_rate": 0.001,
               "exchange_netflow_zscore": 3.0}, EXIT)]
    for extra, rec in steps:
        assert assess_cascade(DEFAULT, make_cascade(**{**base, **extra})).recommendation is rec


@given(ind=cascade_indicators())
@settings(max_examples=300, deadline=None)
def test_score_in_unit_interval_and_consistent_band(ind: CascadeIndicators) -> None:
    """For any valid readings: score in [0, 1], components in [0, 1], band matches score."""
    a = assess_cascade(DEFAULT, ind)
    assert 0.0 <= a.score <= 1.0
    assert all(0.0 <= c <= 1.0 for c in a.components.values())
    expected = (EXIT if a.score > 0.8 else R75 if a.score > 0.6 else R50 if a.score > 0.4
                else MON)
    assert a.recommendation is expected


@given(ind=cascade_indicators())
@settings(max_examples=200, deadline=None)
def test_more_stress_never_lowers_score(ind: CascadeIndicators) -> None:
    """Raising whale pressure (more stress) never lowers the score or the keep-multiplier."""
    worse = CascadeIndicators(ind.funding_rate, ind.oi_change_pct, ind.volume_ratio,
                              min(1.0, ind.onchain_whale_pressure + 0.3),
                              ind.exchange_netflow_zscore)
    a, b = assess_cascade(DEFAULT, ind), assess_cascade(DEFAULT, worse)
    assert b.score >= a.score and b.multiplier <= a.multiplier


# ------------------------------------------------------------ signed whale pressure
def _flow(flow: float) -> CascadeIndicators:
    """Calm readings but for Layer 1's signed whale pressure (+1 = whales buying)."""
    return CascadeIndicators.from_whale_flow(0.0, 0.0, 1.0, flow, 0.0)


@pytest.mark.parametrize("flow, long_whale, short_whale",
                         [(-0.8, 1.0, 0.0), (-0.4, 0.5, 0.0), (0.0, 0.0, 0.0),
                          (0.4, 0.0, 0.5), (0.8, 0.0, 1.0)])
def test_signed_whale_pressure_is_risk_only_against_the_trade(
        flow: float, long_whale: float, short_whale: float) -> None:
    """Whales selling (flow < 0) weigh on a long only; whales buying on a short only."""
    ind = _flow(flow)
    assert ind.onchain_whale_pressure == max(0.0, -flow)
    assert assess_cascade(DEFAULT, ind, 1).components["whale_pressure"] == long_whale
    assert assess_cascade(DEFAULT, ind, -1).components["whale_pressure"] == short_whale


def test_unsigned_readings_score_the_same_for_both_sides() -> None:
    """Without whale_flow the existing meaning holds: the reading counts for either side."""
    ind = make_cascade(onchain_whale_pressure=0.6)
    assert assess_cascade(DEFAULT, ind, 1) == assess_cascade(DEFAULT, ind, -1)
    assert assess_cascade(DEFAULT, ind) == assess_cascade(DEFAULT, ind, 1)


def test_signed_long_side_equals_the_unsigned_reading() -> None:
    """For a long, signed readings score exactly as the unsigned selling pressure."""
    for flow in (-1.0, -0.3, 0.0, 0.7):
        signed = _flow(flow)
        unsigned = make_cascade(funding_rate=0.0, onchain_whale_pressure=max(0.0, -flow))
        assert (assess_cascade(DEFAULT, signed, 1).score
                == assess_cascade(DEFAULT, unsigned, 1).score)


def test_whale_flow_is_validated_and_must_agree_with_the_unsigned_field() -> None:
    """A flow outside [-1, 1], or an unsigned field that is not max(0, -flow), is refused."""
    with pytest.raises(InvalidCascadeIndicatorsException, match="whale_flow"):
        _flow(1.5)
    with pytest.raises(InvalidCascadeIndicatorsException, match="whale_flow"):
        _flow(float("nan"))
    with pytest.raises(InvalidCascadeIndicatorsException, match="onchain_whale_pressure"):
        CascadeIndicators(0.0, 0.0, 1.0, 0.0, 0.0, None, -0.5)
    assert CascadeIndicators.from_dict(_flow(-0.5).to_dict()) == _flow(-0.5)


def test_phase1_cuts_the_short_not_the_long_when_whales_buy() -> None:
    """Heavy whale buying: a short is cut by the cascade stage, a long is not."""
    from himari_l3 import TacticalAction
    from himari_l3.config.schema import LimitsConfig, SizingConfig

    engine = make_engine(config=SizingConfig(limits=LimitsConfig(allow_short=True)))
    buying = _flow(1.0)
    long_ = engine.calculate_position(make_signal(), buying, 50_000.0)
    short = engine.calculate_position(make_signal(action=TacticalAction.SELL), buying, 50_000.0)
    assert long_.diagnostics["cascade"]["components"]["whale_pressure"] == 0.0
    assert short.diagnostics["cascade"]["components"]["whale_pressure"] == 1.0
    assert short.cascade_risk_score > long_.cascade_risk_score
