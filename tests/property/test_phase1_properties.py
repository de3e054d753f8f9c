"""Phase 1 invariants that must hold for any valid input (hypothesis), and the size
distribution on a seeded ordinary workload."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import (
    SIGNAL_DEFAULTS,
    calm_cascades,
    cascade_indicators,
    make_engine,
    make_signal,
    ordinary_signals,
    valid_signals,
)
from himari_l3 import (
    CascadeIndicators,
    CascadeRecommendation,
    InvalidCascadeIndicatorsException,
    InvalidSignalException,
    MarketRegime,
    TacticalAction,
    TacticalSignal,
)
from himari_l3.config.schema import KellyConfig, SizingConfig

PROFILE = settings(deadline=None, max_examples=150,
                   suppress_health_check=[HealthCheck.too_slow])

BUYS = (TacticalAction.BUY, TacticalAction.STRONG_BUY)
SELLS = (TacticalAction.SELL, TacticalAction.STRONG_SELL)
positions = st.floats(-1e6, 1e6, allow_nan=False)
pvs = st.floats(1.0, 1e9)
prices = st.floats(1e-4, 1e6)


def _with(sig: TacticalSignal, **kw: Any) -> TacticalSignal:
    return TacticalSignal(**{**sig.to_dict(), **kw})


# ------------------------------------------------------------------ must hold
@given(sig=valid_signals(), ind=cascade_indicators(), price=prices, current=positions,
       pv=pvs, allow_short=st.booleans(), max_pct=st.floats(0.001, 1.0),
       model=st.sampled_from(["predictive", "binary", "gaussian"]),
       kelly_fraction=st.floats(0.01, 1.0))
@settings(PROFILE, max_examples=1000)
def test_invariants_for_any_valid_input(sig: TacticalSignal, ind: CascadeIndicators,
                                        price: float, current: float, pv: float,
                                        allow_short: bool, max_pct: float, model: str,
                                        kelly_fraction: float) -> None:
    """Finite size within the cap; EXIT => 0; sells never long; HOLD never grows exposure;
    shorts only when enabled; units and stage sizes consistent."""
    cfg = SizingConfig(kelly=KellyConfig(model=model))  # type: ignore[arg-type]
    e = make_engine(portfolio_value=pv, config=cfg, allow_short=allow_short,
                    max_position_pct=max_pct, kelly_fraction=kelly_fraction)
    d = e.calculate_position(sig, ind, price, current_position_usd=current)
    size = d.position_size_usd
    cap = d.diagnostics["cap_usd"]
    assert math.isfinite(size) and math.isfinite(d.position_size_units)
    assert cap == max_pct * pv
    assert abs(size) <= cap * (1 + 1e-12)
    for stage in (d.kelly_size_usd, d.conformal_size_usd, d.sentiment_size_usd,
                  d.regime_size_usd, d.cascade_size_usd, d.capped_size_usd):
        assert math.isfinite(stage) and stage >= 0.0
    if d.cascade_recommendation is CascadeRecommendation.EXIT:
        assert size == 0.0
    if sig.action in SELLS:
        assert size <= 0.0
    if sig.action in BUYS:
        assert size >= 0.0
    if sig.action is TacticalAction.HOLD:
        assert abs(size) <= abs(current)
        assert size * current >= 0.0
    elif not allow_short:
        assert size >= 0.0
    if size != 0.0:
        assert d.position_size_units == pytest.approx(size / price, rel=1e-12)
        assert abs(size) >= e.config.limits.min_position_usd or (
            sig.action is TacticalAction.HOLD)
    else:
        assert d.position_size_units == 0.0


@given(sig=valid_signals(), ind=cascade_indicators())
@settings(PROFILE)
def test_exit_is_exactly_zero_whatever_the_signal(sig: TacticalSignal,
                                                  ind: CascadeIndicators) -> None:
    """A cascade score above 0.8 gives a zero target for every action and position."""
    d = make_engine(allow_short=True).calculate_position(sig, ind, 100.0,
                                                         current_position_usd=5_000.0)
    exit_ = d.cascade_recommendation is CascadeRecommendation.EXIT
    assert exit_ == (d.cascade_risk_score > 0.8)
    if exit_:
        assert d.position_size_usd == 0.0 and "CASCADE_EXIT" in d.reason_codes


SIGNAL_NUMERIC = ["confidence", "risk_score", "expected_return", "predicted_volatility",
                  "signal_strength", "sentiment_score", "sentiment_confidence"]
CASCADE_NUMERIC = ["funding_rate", "oi_change_pct", "volume_ratio", "onchain_whale_pressure",
                   "exchange_netflow_zscore", "liquidation_volume_24h"]
bad_numbers = st.sampled_from([math.nan, math.inf, -math.inf]) | st.floats(1e14, 1e300) | \
    st.floats(-1e300, -1e14)


@given(field=st.sampled_from(SIGNAL_NUMERIC), bad=bad_numbers)
@settings(PROFILE)
def test_bad_signal_number_raises_named(field: str, bad: float) -> None:
    """NaN, inf or out-of-range in any numeric signal field raises InvalidSignalException
    naming the field and the value."""
    with pytest.raises(InvalidSignalException) as info:
        make_signal(**{field: bad})
    assert info.value.field == field and info.value.value is bad
    assert str(info.value).startswith(f"{field} was {bad!r}")


@given(field=st.sampled_from(CASCADE_NUMERIC), bad=bad_numbers)
@settings(PROFILE)
def test_bad_cascade_number_raises_named(field: str, bad: float) -> None:
    """NaN, inf or out-of-range in any cascade field raises the named exception."""
    base = CascadeIndicators.calm().to_dict()
    with pytest.raises(InvalidCascadeIndicatorsException) as info:
        CascadeIndicators(**{**base, field: bad})
    assert info.value.field == field and str(info.value).startswith(f"{field} was ")


# --------------------------------------------------------------- monotonicity
@given(sig=ordinary_signals(), ind=calm_cascades(), c1=st.floats(0.0, 1.0),
       c2=st.floats(0.0, 1.0), allow_short=st.booleans(),
       action=st.sampled_from(list(BUYS + SELLS)))
@settings(PROFILE, max_examples=300)
def test_size_non_decreasing_in_confidence(sig: TacticalSignal, ind: CascadeIndicators,
                                           c1: float, c2: float, allow_short: bool,
                                           action: TacticalAction) -> None:
    """With everything else fixed and a fresh engine, more confidence never shrinks |size|."""
    lo, hi = sorted((c1, c2))
    s_lo = make_engine(allow_short=allow_short).calculate_position(
        _with(sig, confidence=lo, action=action), ind, 100.0)
    s_hi = make_engine(allow_short=allow_short).calculate_position(
        _with(sig, confidence=hi, action=action), ind, 100.0)
    assert abs(s_hi.position_size_usd) >= abs(s_lo.position_size_usd)


@given(sig=ordinary_signals(), ind=calm_cascades(), e1=st.floats(-0.1, 0.5),
       e2=st.floats(-0.1, 0.5), vol=st.none() | st.floats(0.005, 1.0),
       model=st.sampled_from(["predictive", "binary", "gaussian"]))
@settings(PROFILE, max_examples=300)
def test_size_non_decreasing_in_edge(sig: TacticalSignal, ind: CascadeIndicators, e1: float,
                                     e2: float, vol: float | None, model: str) -> None:
    """With everything else fixed and a fresh engine, a larger expected return never
    shrinks the size (negative and zero edges included)."""
    lo, hi = sorted((e1, e2))
    cfg = SizingConfig(kelly=KellyConfig(model=model))  # type: ignore[arg-type]
    s_lo = make_engine(config=cfg).calculate_position(
        _with(sig, expected_return=lo, predicted_volatility=vol), ind, 100.0)
    s_hi = make_engine(config=cfg).calculate_position(
        _with(sig, expected_return=hi, predicted_volatility=vol), ind, 100.0)
    assert s_hi.position_size_usd >= s_lo.position_size_usd


def _never_grows_with_uncertainty(size: Callable[[float, float], float],
                                  a: tuple[float, float], b: tuple[float, float]) -> None:
    """``a`` and ``b`` are (more certain, less certain) values of two prior knobs and
    ``size(a_value, b_value)`` the final size: moving either knob, or both, toward less
    certainty never increases it."""
    ulp = 1 + 1e-12  # (n0 c) / n0 may differ from c in the last bit
    (a_sure, a_unsure), (b_sure, b_unsure) = a, b
    certain = size(a_sure, b_sure) * ulp
    assert size(a_unsure, b_sure) <= certain
    assert size(a_sure, b_unsure) <= certain
    assert size(a_unsure, b_unsure) <= min(size(a_unsure, b_sure),
                                           size(a_sure, b_unsure)) * ulp


@given(sig=ordinary_signals(), ind=calm_cascades(), z1=st.floats(0.0, 5.0),
       z2=st.floats(0.0, 5.0), n1=st.floats(1.0, 1e4), n2=st.floats(1.0, 1e4))
@settings(PROFILE, max_examples=200)
def test_more_prior_uncertainty_never_increases_size(sig: TacticalSignal,
                                                     ind: CascadeIndicators, z1: float,
                                                     z2: float, n1: float, n2: float) -> None:
    """Binary model: a larger uncertainty penalty or a weaker prior (fewer
    pseudo-observations) never increases the final size."""
    z_lo, z_hi = sorted((z1, z2))
    n_lo, n_hi = sorted((n1, n2))

    def size(z: float, n0: float) -> float:
        cfg = SizingConfig(kelly=KellyConfig(model="binary", uncertainty_z=z,
                                             prior_strength=n0))
        return make_engine(config=cfg).calculate_position(sig, ind, 100.0).position_size_usd

    _never_grows_with_uncertainty(size, (z_lo, z_hi), (n_hi, n_lo))


@given(sig=ordinary_signals(), ind=calm_cascades(), t1=st.floats(0.01, 100.0),
       t2=st.floats(0.01, 100.0), r1=st.floats(0.0, 1e3), r2=st.floats(0.0, 1e3))
@settings(PROFILE, max_examples=200)
def test_more_prior_scepticism_never_increases_size(sig: TacticalSignal,
                                                    ind: CascadeIndicators, t1: float,
                                                    t2: float, r1: float, r2: float) -> None:
    """Predictive model: a tighter prior on the edge (smaller edge_prior_kelly) or a weaker
    report (smaller report_strength) never increases the final size."""
    t_lo, t_hi = sorted((t1, t2))
    r_lo, r_hi = sorted((r1, r2))

    def size(kappa: float, n_r: float) -> float:
        cfg = SizingConfig(kelly=KellyConfig(edge_prior_kelly=kappa, report_strength=n_r))
        return make_engine(config=cfg).calculate_position(sig, ind, 100.0).position_size_usd

    _never_grows_with_uncertainty(size, (t_hi, t_lo), (r_hi, r_lo))


@given(sig=ordinary_signals(), k1=st.integers(0, 12), k2=st.integers(0, 12))
@settings(PROFILE, max_examples=100)
def test_fewer_consistent_observations_never_increase_kelly_size(sig: TacticalSignal,
                                                                 k1: int, k2: int) -> None:
    """Outcomes that agree with the prior (win rate = 0.6 = confidence, mean = edge) only
    remove uncertainty: the Kelly-stage size with fewer of them is never larger."""
    sig = _with(sig, confidence=0.6, expected_return=0.01)
    # 3 wins of +4.5 %, 2 losses of -4.25 %: win rate 0.6, mean +1 %
    block = (0.045, -0.0425, 0.045, -0.0425, 0.045)
    lo, hi = sorted((k1, k2))

    def kelly_usd(blocks: int) -> float:
        e = make_engine()
        for _ in range(blocks):
            for r in block:
                e.update_from_trade_result(sig.strategy_id, sig.symbol, r,
                                           predicted_return=0.01, predicted_volatility=0.05)
        return e.calculate_position(sig, CascadeIndicators.calm(), 100.0).kelly_size_usd

    assert kelly_usd(lo) <= kelly_usd(hi) * (1 + 1e-12)


# ---------------------------------------------------------------- independence
@given(sigs=st.lists(ordinary_signals(), min_size=2, max_size=6))
@settings(PROFILE, max_examples=60)
def test_symbols_do_not_interact(sigs: list[TacticalSignal]) -> None:
    """A signal's decision depends only on its own symbol's history: sizing other symbols
    in between (CRISIS included) changes nothing."""
    target = _with(sigs[0], symbol="TARGET")
    others = [_with(s, regime=MarketRegime.CRISIS) for s in sigs[1:]]
    alone = make_engine().calculate_position(target, CascadeIndicators.calm(), 10.0)
    e = make_engine()
    for s in others:
        e.calculate_position(s, CascadeIndicators.calm(), 10.0)
    mixed = e.calculate_position(target, CascadeIndicators.calm(), 10.0)
    assert mixed.position_size_usd == alone.position_size_usd
    assert mixed.current_regime is alone.current_regime


# ------------------------------------------------------- ordinary workload shape
def _ordinary_workload(n: int, seed: int) -> list[TacticalSignal]:
    rng = random.Random(seed)
    regimes = list(MarketRegime)
    return [
        TacticalSignal(
            strategy_id=f"strat{i % 3}", symbol=f"SYM{i % 20:02d}",
            action=rng.choice(BUYS), confidence=rng.uniform(0.3, 0.95),
            risk_score=rng.uniform(0.0, 1.0), regime=rng.choice(regimes), timestamp_ns=i,
            expected_return=rng.uniform(0.002, 0.06),
            predicted_volatility=rng.uniform(0.01, 0.25),
        )
        for i in range(n)
    ]


CAPS = ("position_cap", "max_notional", "kelly_cap")


@pytest.mark.parametrize("seed", [1, 2026])
def test_before_outcomes_sizes_are_small_and_spread(seed: int) -> None:
    """On a seeded ordinary workload (confidence 0.3-0.95, edge 0.2-6 %, vol 1-25 %, random
    regimes, calm cascade) and no outcomes yet, the sceptical prior keeps sizes small and
    spread: under 2 % at a cap, p90 under a fifth of the cap, p90/p10 > 5, and every zero is
    a size below the minimum notional (not a refusal). Measured with the default config:
    0.2-0.6 % at a cap, median ~$60 of $100k, p90 ~6 % of the cap, 12 % below $10."""
    e = make_engine()
    calm = CascadeIndicators.calm()
    decisions = [e.calculate_position(s, calm, 100.0) for s in _ordinary_workload(3_000, seed)]
    sizes = [d.position_size_usd for d in decisions]
    at_cap = sum(d.diagnostics["binding_limit"] in CAPS for d in decisions) / len(decisions)
    assert at_cap < 0.02
    zeros = [d for d in decisions if d.position_size_usd == 0.0]
    assert all(d.diagnostics["binding_limit"] == "min_notional" for d in zeros)
    assert len(zeros) / len(sizes) < 0.2
    deciles = statistics.quantiles([x for x in sizes if x > 0.0], n=10)
    assert all(a < b for a, b in itertools.pairwise(deciles))
    assert deciles[-1] / deciles[0] > 5.0  # p90 over p10: not a narrow band
    cap = decisions[0].diagnostics["cap_usd"]
    assert deciles[-1] < 0.2 * cap


def test_proven_edges_may_ask_for_the_cap() -> None:
    """The same workload after every key has 400 outcomes of a real edge (mean +1 %, sd 5 %):
    the cap now binds for a large share of signals (measured 23 %, from 0.6 % before
    outcomes), and never more than the cap is taken."""
    e = make_engine()
    calm = CascadeIndicators.calm()
    workload = _ordinary_workload(1_500, 1)
    for key in {(s.strategy_id, s.symbol) for s in workload}:
        for i in range(400):
            e.update_from_trade_result(*key, 0.06 if i % 2 else -0.04,
                                       predicted_return=0.01, predicted_volatility=0.05)
    decisions = [e.calculate_position(s, calm, 100.0) for s in workload]
    at_cap = sum(d.diagnostics["binding_limit"] in CAPS for d in decisions) / len(decisions)
    assert at_cap > 0.15
    assert max(d.position_size_usd for d in decisions) <= decisions[0].diagnostics["cap_usd"]


def test_ordinary_workload_cap_share_detects_piling() -> None:
    """The cap-share measure above can fail: an aggressive config piles sizes at the cap."""
    cfg = SizingConfig(kelly=KellyConfig(model="gaussian", fraction=1.0, uncertainty_z=0.0))
    e = make_engine(config=cfg)
    calm = CascadeIndicators.calm()
    decisions = [e.calculate_position(s, calm, 100.0) for s in _ordinary_workload(500, 3)]
    at_cap = sum(d.diagnostics["binding_limit"] in ("position_cap", "kelly_cap")
                 for d in decisions) / len(decisions)
    assert at_cap > 0.3


def test_defaults_used_by_strategies_are_ordinary() -> None:
    """The shared default signal is itself an ordinary signal (guards the fixtures)."""
    d = SIGNAL_DEFAULTS
    assert 0.3 <= d["confidence"] <= 0.95 and 0.002 <= d["expected_return"] <= 0.06
    assert 0.01 <= d["predicted_volatility"] <= 0.25


@given(sig=valid_signals(), ind=cascade_indicators(),
       price=st.floats(1e-12, 1e12), current=st.none() | st.floats(-1e15, 1e15),
       pv=st.floats(1e-6, 1e13).filter(lambda x: x > 0), allow_short=st.booleans(),
       sl=st.floats(1e-6, 20.0), tp=st.floats(1e-6, 50.0))
@settings(PROFILE, max_examples=500)
def test_every_output_is_finite_at_the_extremes_of_the_accepted_ranges(
        sig: TacticalSignal, ind: CascadeIndicators, price: float, current: float | None,
        pv: float, allow_short: bool, sl: float, tp: float) -> None:
    """Anything calculate_position accepts (prices 1e-12..1e12, positions up to 1e15 USD,
    equity up to 1e13, the widest bracket settings) gives only finite numbers: units are
    never infinite, a stop or take-profit is a finite price or None with a reason code."""
    cfg = SizingConfig.model_validate({"execution": {"stop_loss_sigma": sl,
                                                     "take_profit_sigma": tp}})
    e = make_engine(portfolio_value=pv, config=cfg, allow_short=allow_short)
    d = e.calculate_position(sig, ind, price, current_position_usd=current)
    out = d.to_dict()

    def numbers(v: Any) -> list[float]:
        if isinstance(v, dict):
            return [x for w in v.values() for x in numbers(w)]
        if isinstance(v, list):
            return [x for w in v for x in numbers(w)]
        return [v] if isinstance(v, float) else []

    assert all(math.isfinite(x) for x in numbers(
        {k: v for k, v in out.items() if k != "diagnostics"}))
    # (NaN in the trace means "not defined here", e.g. no payoff ratio; never infinite)
    assert not any(math.isinf(x) for x in numbers(out["diagnostics"]))
    assert math.isfinite(d.position_size_units)
    for price_field in (d.stop_loss_price, d.take_profit_price):
        if price_field is not None:
            assert math.isfinite(price_field) and price_field > 0.0
        elif d.position_size_usd != 0.0:
            assert {"BRACKET_BEYOND_ZERO", "NO_VOLATILITY_FOR_BRACKET"} & set(d.reason_codes)
