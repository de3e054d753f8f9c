"""Phase 1 orchestrator: user usage, trace, reasons, direction, execution fields, learning,
state, metrics and logging."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import pytest

from conftest import PORTFOLIO, make_cascade, make_engine, make_metrics_observer, make_signal
from himari_l3 import (
    CascadeIndicators,
    CascadeRecommendation,
    InvalidCascadeIndicatorsException,
    InvalidOutcomeException,
    InvalidPriceException,
    InvalidSignalException,
    ManualClock,
    MarketRegime,
    StateRestoreError,
    TacticalAction,
    ValidationError,
    ValidationStatus,
)
from himari_l3.config.schema import LimitsConfig, SizingConfig
from himari_l3.phase1 import Layer3Phase1

CALM = CascadeIndicators.calm()
STRESS_EXIT = CascadeIndicators(0.002, -0.2, 5.0, 0.9, 4.0)  # score 1.0
STRESS_R75 = make_cascade(onchain_whale_pressure=0.8, oi_change_pct=-0.10, funding_rate=0.001)
STRESS_R50 = make_cascade(onchain_whale_pressure=0.8, oi_change_pct=-0.10)


# ------------------------------------------------------------------ user's usage
def test_user_phase1_usage_from_package_root() -> None:
    """The Phase 1 example a new user writes, importing everything from `himari_l3`."""
    from himari_l3 import (
        CascadeIndicators,
        Layer3Phase1,
        MarketRegime,
        TacticalAction,
        TacticalSignal,
    )

    layer3 = Layer3Phase1(portfolio_value=100000, kelly_fraction=0.25, enable_metrics=True,
                          enable_sentiment=True)
    signal = TacticalSignal(
        strategy_id="momentum_btc", symbol="BTC-USD", action=TacticalAction.BUY,
        confidence=0.75, risk_score=0.3, regime=MarketRegime.TRENDING_UP,
        timestamp_ns=1_700_000_000_000_000_000, expected_return=0.03,
        predicted_volatility=0.04, sentiment_score=0.7, sentiment_confidence=0.8,
    )
    cascade = CascadeIndicators(funding_rate=0.0002, oi_change_pct=-0.02, volume_ratio=1.3,
                                onchain_whale_pressure=0.2, exchange_netflow_zscore=0.5)
    decision = layer3.calculate_position(signal, cascade, current_price=50_000.0)

    assert 0.0 < decision.position_size_usd <= 0.15 * 100_000
    assert 0.0 <= decision.cascade_risk_score < 0.4
    assert decision.cascade_recommendation == "MONITOR"
    assert decision.current_regime is MarketRegime.TRENDING_UP  # first observation
    assert decision.position_size_units == decision.position_size_usd / 50_000.0


def test_constructor_overrides_reach_config() -> None:
    """kelly_fraction, enable_sentiment, max_position_pct and allow_short override config."""
    e = Layer3Phase1(portfolio_value=5_000, kelly_fraction=0.5, enable_metrics=False,
                     enable_sentiment=False, max_position_pct=0.05, allow_short=True)
    assert e.config.kelly.fraction == 0.5 and not e.config.sentiment.enabled
    assert e.config.limits.max_position_pct == 0.05 and e.config.limits.allow_short


@pytest.mark.parametrize("value", [0, -1.0, math.nan, math.inf, 1e300, 1.0000001e13])
def test_bad_portfolio_value_rejected(value: float) -> None:
    """portfolio_value must be finite, > 0 and <= 1e13 (the config's bound), named in the
    error, in the constructor and as a per-call override."""
    with pytest.raises(InvalidPriceException, match="portfolio_value"):
        Layer3Phase1(portfolio_value=value, enable_metrics=False)
    with pytest.raises(InvalidPriceException, match="portfolio_value"):
        make_engine().calculate_position(make_signal(), CALM, 100.0, portfolio_value=value)


@pytest.mark.parametrize(("kw", "field"), [
    ({"current_price": 1e308}, "current_price"), ({"current_price": 5e-324}, "current_price"),
    ({"current_price": 1.01e12}, "current_price"),
    ({"current_position_usd": 1e308}, "current_position_usd"),
    ({"current_position_usd": -2e15}, "current_position_usd"),
])
def test_extreme_finite_inputs_are_refused_naming_the_field(kw: dict[str, float],
                                                            field: str) -> None:
    """Prices outside [1e-12, 1e12] and held positions beyond 1e15 USD would give infinite
    units or overflowing brackets: refused, naming the field and the range."""
    args: dict[str, Any] = {"current_price": 100.0, **kw}
    with pytest.raises(ValidationError, match=f"{field} was .*, expected"):
        make_engine().calculate_position(make_signal(), CALM, **args)


# ----------------------------------------------------------------- stage chain
def test_stage_sizes_chain_multiplicatively() -> None:
    """Each stage's size is the previous one times the multiplier recorded in the trace."""
    d = make_engine().calculate_position(
        make_signal(sentiment_score=0.9, sentiment_confidence=0.6, regime="HIGH_VOLATILITY"),
        STRESS_R50, 50_000.0)
    t = d.diagnostics
    assert d.kelly_size_usd == pytest.approx(t["kelly"]["fraction"] * PORTFOLIO)
    assert d.conformal_size_usd == pytest.approx(d.kelly_size_usd * t["conformal"]["multiplier"])
    assert d.sentiment_size_usd == pytest.approx(d.conformal_size_usd
                                                 * t["sentiment_multiplier"])
    assert d.regime_size_usd == pytest.approx(d.sentiment_size_usd * t["regime"]["multiplier"])
    assert d.cascade_size_usd == pytest.approx(d.regime_size_usd * t["cascade"]["multiplier"])
    assert (t["conformal"]["multiplier"], t["regime"]["multiplier"],
            t["cascade"]["multiplier"]) == (0.8, 0.6, 0.5)
    assert t["sentiment_multiplier"] == pytest.approx(1 + 0.15 * 0.75 * 0.6)
    assert d.capped_size_usd == d.cascade_size_usd == d.position_size_usd


def test_trace_contents() -> None:
    """The trace records inputs, every multiplier, the cap and the binding limit."""
    d = make_engine().calculate_position(make_signal(), CALM, 50_000.0)
    t = d.diagnostics
    assert {"portfolio_value", "price", "direction", "current_position_usd", "kelly",
            "conformal", "sentiment_multiplier", "regime", "cascade", "cap_usd",
            "binding_limit", "signal_timestamp_ns"} <= set(t)
    assert set(t["kelly"]) == {"model", "win_prob", "win_prob_effective", "payoff_ratio",
                               "edge", "full_kelly", "risk_multiplier", "fraction",
                               "observations", "edge_std", "exploring", "bound"}
    assert set(t["cascade"]["components"]) == {"funding_rate", "oi_drop", "volume_ratio",
                                               "whale_pressure", "netflow_zscore"}
    assert t["cap_usd"] == 15_000.0 and t["binding_limit"] == "none"
    # no outcomes: the report's 0.02, worth c = 0.7 pseudo-trades against 1/(kappa sigma)^2 =
    # 400 of zero edge
    assert t["kelly"]["edge"] == pytest.approx(0.7 * 0.02 / 400.7)
    assert (t["kelly"]["exploring"], t["kelly"]["bound"]) == (False, "none")
    assert t["conformal"]["quantile"] is None  # cold start
    json.dumps(d.to_dict(), allow_nan=False)


def test_clean_buy_passes() -> None:
    """An ordinary BUY in a calm market: PASS, no reason codes, positive size under cap."""
    d = make_engine().calculate_position(make_signal(), CALM, 50_000.0)
    assert d.validation_status is ValidationStatus.PASS and d.reason_codes == ()
    assert 0 < d.position_size_usd < 15_000 and d.action is TacticalAction.BUY


def test_timestamp_from_injected_clock() -> None:
    """The decision's timestamp comes from the injected clock."""
    clock = ManualClock()
    d = make_engine(clock=clock).calculate_position(make_signal(), CALM, 1.0)
    assert d.timestamp_ns == clock.time_ns()
    assert d.latency_ms >= 0.0


# ---------------------------------------------------------- reasons and status
@pytest.mark.parametrize(("cascade", "rec", "reason", "keep"), [
    (STRESS_R50, CascadeRecommendation.REDUCE_50, "CASCADE_REDUCE_50", 0.5),
    (STRESS_R75, CascadeRecommendation.REDUCE_75, "CASCADE_REDUCE_75", 0.25),
])
def test_cascade_reduce_warns(cascade: CascadeIndicators, rec: CascadeRecommendation,
                              reason: str, keep: float) -> None:
    """REDUCE bands keep 50 % / 25 % of the size and WARN with a reason."""
    calm = make_engine().calculate_position(make_signal(), CALM, 100.0)
    d = make_engine().calculate_position(make_signal(), cascade, 100.0)
    assert d.cascade_recommendation is rec and reason in d.reason_codes
    assert d.validation_status is ValidationStatus.WARN
    assert d.position_size_usd == pytest.approx(calm.position_size_usd * keep)


def test_cascade_exit_rejects() -> None:
    """EXIT: size exactly 0, REJECT, CASCADE_EXIT, binding cascade_exit."""
    d = make_engine().calculate_position(make_signal(confidence=0.95), STRESS_EXIT, 100.0)
    assert d.cascade_risk_score == 1.0 and d.cascade_recommendation is CascadeRecommendation.EXIT
    assert d.position_size_usd == 0.0 and d.position_size_units == 0.0
    assert d.validation_status is ValidationStatus.REJECT
    assert "CASCADE_EXIT" in d.reason_codes and d.diagnostics["binding_limit"] == "cascade_exit"
    assert d.stop_loss_price is None and d.take_profit_price is None


def test_zero_expected_return_is_no_edge() -> None:
    """expected_return 0 is "no edge": size 0, REJECT, NO_EDGE."""
    d = make_engine().calculate_position(make_signal(expected_return=0.0), CALM, 100.0)
    assert d.position_size_usd == 0.0 and "NO_EDGE" in d.reason_codes
    assert d.validation_status is ValidationStatus.REJECT


def test_negative_expected_return_without_volatility_is_no_edge() -> None:
    """A BUY expecting to lose money is never sized long, even without a volatility."""
    d = make_engine().calculate_position(
        make_signal(expected_return=-0.05, predicted_volatility=None), CALM, 100.0)
    assert d.position_size_usd == 0.0 and "NO_EDGE" in d.reason_codes


def test_below_min_notional_rejects() -> None:
    """A size under min_position_usd becomes 0 with BELOW_MIN_NOTIONAL."""
    d = make_engine(portfolio_value=100.0).calculate_position(make_signal(), CALM, 100.0)
    assert d.capped_size_usd == 0.0 and d.position_size_usd == 0.0
    assert "BELOW_MIN_NOTIONAL" in d.reason_codes
    assert d.validation_status is ValidationStatus.REJECT
    assert d.diagnostics["binding_limit"] == "min_notional"


def test_position_cap_binds_and_warns() -> None:
    """A size above max_position_pct is cut to the cap: POSITION_CAP, WARN."""
    e = make_engine(max_position_pct=0.001)  # the default signal sizes ~0.24 % before outcomes
    d = e.calculate_position(make_signal(), CALM, 100.0)
    assert d.position_size_usd == pytest.approx(0.001 * PORTFOLIO)
    assert d.cascade_size_usd > d.capped_size_usd
    assert "POSITION_CAP" in d.reason_codes and d.validation_status is ValidationStatus.WARN


def test_max_notional_binds() -> None:
    """max_position_usd below the percentage cap binds as max_notional."""
    cfg = SizingConfig(limits=LimitsConfig(max_position_usd=100.0))
    d = make_engine(config=cfg).calculate_position(make_signal(), CALM, 100.0)
    assert d.position_size_usd == 100.0 and "MAX_NOTIONAL" in d.reason_codes
    assert d.diagnostics["cap_usd"] == 100.0


def test_portfolio_value_per_call() -> None:
    """A per-call portfolio_value scales the size and the cap."""
    e = make_engine()
    a = e.calculate_position(make_signal(), CALM, 100.0)
    b = make_engine().calculate_position(make_signal(), CALM, 100.0, portfolio_value=2 * PORTFOLIO)
    assert b.position_size_usd == pytest.approx(2 * a.position_size_usd)
    assert b.diagnostics["cap_usd"] == 2 * a.diagnostics["cap_usd"]


# ------------------------------------------------------------------- direction
@pytest.mark.parametrize("action", ["SELL", "STRONG_SELL"])
def test_sell_without_shorting_is_flat(action: str) -> None:
    """Shorting disabled (default): a sell targets 0, REJECT with SHORT_DISABLED."""
    d = make_engine().calculate_position(make_signal(action=action), CALM, 100.0,
                                         current_position_usd=3_000.0)
    assert d.position_size_usd == 0.0 and "SHORT_DISABLED" in d.reason_codes


@pytest.mark.parametrize("action", ["SELL", "STRONG_SELL"])
def test_sell_with_shorting_is_negative(action: str) -> None:
    """Shorting enabled: a sell is a negative target with negative units."""
    d = make_engine(allow_short=True).calculate_position(make_signal(action=action), CALM, 100.0)
    assert d.position_size_usd < 0 and d.position_size_units < 0
    assert d.capped_size_usd == -d.position_size_usd


def test_short_uses_mirrored_regime() -> None:
    """A short in a (first-seen) downtrend gets the 1.2 multiplier; a long gets 0.8."""
    e = make_engine(allow_short=True)
    short = e.calculate_position(make_signal(action="SELL", regime="TRENDING_DOWN"), CALM, 1.0)
    long_ = e.calculate_position(make_signal(regime="TRENDING_DOWN"), CALM, 1.0)
    assert short.diagnostics["regime"]["multiplier"] == 1.2
    assert long_.diagnostics["regime"]["multiplier"] == 0.8
    assert -short.position_size_usd == pytest.approx(long_.position_size_usd * 1.5)


@pytest.mark.parametrize("current", [0.0, 4_000.0, -4_000.0, 50_000.0])
def test_hold_never_increases_exposure(current: float) -> None:
    """HOLD keeps at most the current position, same side, never more."""
    e = make_engine(allow_short=True)
    d = e.calculate_position(make_signal(action="HOLD", regime="TRENDING_UP"), CALM, 100.0,
                             current_position_usd=current)
    assert abs(d.position_size_usd) <= abs(current)
    assert d.position_size_usd * current >= 0
    assert abs(d.position_size_usd) <= d.diagnostics["cap_usd"]
    assert d.validation_status is not ValidationStatus.REJECT


def test_hold_cut_by_risk_stages() -> None:
    """HOLD in CRISIS with a REDUCE_50 cascade keeps 0.2 x 0.5 of the position."""
    d = make_engine().calculate_position(make_signal(action="HOLD", regime="CRISIS"),
                                         STRESS_R50, 100.0, current_position_usd=10_000.0)
    assert d.position_size_usd == pytest.approx(1_000.0)


def test_hold_exits_on_cascade_exit() -> None:
    """HOLD under a cascade EXIT goes flat."""
    d = make_engine().calculate_position(make_signal(action="HOLD"), STRESS_EXIT, 100.0,
                                         current_position_usd=10_000.0)
    assert d.position_size_usd == 0.0 and "CASCADE_EXIT" in d.reason_codes


# ----------------------------------------------------------- execution fields
def test_long_brackets_and_units() -> None:
    """Long: stop 2 sigma below, take-profit 3 sigma above; units = USD / price."""
    d = make_engine().calculate_position(make_signal(predicted_volatility=0.05), CALM, 200.0)
    assert d.stop_loss_price == pytest.approx(180.0)
    assert d.take_profit_price == pytest.approx(230.0)
    assert d.position_size_units == d.position_size_usd / 200.0


def test_short_brackets_are_mirrored() -> None:
    """Short: stop 2 sigma above, take-profit 3 sigma below."""
    d = make_engine(allow_short=True).calculate_position(
        make_signal(action="SELL", predicted_volatility=0.05), CALM, 200.0)
    assert d.stop_loss_price == pytest.approx(220.0)
    assert d.take_profit_price == pytest.approx(170.0)
    assert d.position_size_units == d.position_size_usd / 200.0 < 0


def test_bracket_beyond_zero_is_flagged() -> None:
    """A stop that would sit at or below zero is omitted with BRACKET_BEYOND_ZERO."""
    d = make_engine().calculate_position(
        make_signal(predicted_volatility=0.6, expected_return=0.5), CALM, 100.0)
    assert d.position_size_usd > 0
    assert d.stop_loss_price is None and d.take_profit_price == pytest.approx(280.0)
    assert "BRACKET_BEYOND_ZERO" in d.reason_codes


def test_no_volatility_no_bracket() -> None:
    """Without a predicted volatility there is no bracket, and the reason says so."""
    d = make_engine().calculate_position(make_signal(predicted_volatility=None), CALM, 100.0)
    assert d.stop_loss_price is None and d.take_profit_price is None
    assert "NO_VOLATILITY_FOR_BRACKET" in d.reason_codes


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize("price", [0.0, -5.0, math.nan, math.inf, "100"])
def test_bad_price_named(price: Any) -> None:
    """A bad current_price raises InvalidPriceException naming it."""
    with pytest.raises(InvalidPriceException, match="current_price was"):
        make_engine().calculate_position(make_signal(), CALM, price)


def test_bad_current_position_named() -> None:
    """A NaN current_position_usd raises, naming the field."""
    with pytest.raises(InvalidSignalException, match="current_position_usd was nan"):
        make_engine().calculate_position(make_signal(), CALM, 1.0,
                                         current_position_usd=math.nan)


def test_wrong_input_types_named() -> None:
    """A dict in place of a signal or cascade raises the named exception."""
    e = make_engine()
    with pytest.raises(InvalidSignalException, match="signal was 'dict'"):
        e.calculate_position({"confidence": 0.5}, CALM, 1.0)  # type: ignore[arg-type]
    with pytest.raises(InvalidCascadeIndicatorsException, match="cascade_indicators"):
        e.calculate_position(make_signal(), {}, 1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("model", ["predictive", "binary", "gaussian"])
@pytest.mark.parametrize("confidence", [5e-324, 1e-310, 1e-300])
def test_subnormal_confidence_sizes_to_zero_without_error(model: str,
                                                          confidence: float) -> None:
    """A valid but vanishing confidence (subnormal float) gives a finite 0, not a
    ZeroDivisionError, and a strict-JSON trace."""
    cfg = SizingConfig(kelly={"model": model, "uncertainty_z": 0.0})  # type: ignore[arg-type]
    d = make_engine(config=cfg).calculate_position(
        make_signal(confidence=confidence, expected_return=0.5, predicted_volatility=0.5),
        CALM, 100.0)
    assert d.position_size_usd == 0.0
    json.dumps(d.to_dict(), allow_nan=False)


def test_invalid_input_leaves_state_untouched() -> None:
    """A rejected call learns nothing and counts no decision."""
    e = make_engine()
    before = e.export_state()
    with pytest.raises(InvalidPriceException):
        e.calculate_position(make_signal(), CALM, math.nan)
    assert e.export_state() == before


# -------------------------------------------------------------------- learning
def test_wins_grow_and_losses_shrink_size() -> None:
    """Winning outcomes raise the next size for the key, losing ones lower it."""
    sig = make_signal()
    base = make_engine().calculate_position(sig, CALM, 1.0).position_size_usd
    winner, loser = make_engine(), make_engine()
    for e, r in ((winner, 0.03), (loser, -0.03)):
        e.calculate_position(sig, CALM, 1.0)
        for _ in range(30):
            e.update_from_trade_result(sig.strategy_id, sig.symbol, r)
    assert winner.calculate_position(sig, CALM, 1.0).position_size_usd > base
    assert loser.calculate_position(sig, CALM, 1.0).position_size_usd < base


def test_update_returns_learned_state() -> None:
    """update_from_trade_result returns trades, win rate and conformal state."""
    e = make_engine()
    e.calculate_position(make_signal(), CALM, 1.0)
    learned = e.update_from_trade_result("momentum", "BTC-USD", 0.01)
    learned = e.update_from_trade_result("momentum", "BTC-USD", -0.01)
    assert learned["trades"] == 2 and learned["win_rate"] == 0.5
    assert learned["conformal_samples"] == 2 and learned["conformal_coverage"] is None
    assert learned["conformal_multiplier"] == 0.8  # still cold


def test_update_uses_last_decision_predictions() -> None:
    """Without explicit predictions, the key's last decision's are used for the score."""
    e = make_engine()
    e.calculate_position(make_signal(expected_return=0.02, predicted_volatility=0.05), CALM, 1.0)
    learned = e.update_from_trade_result("momentum", "BTC-USD", 0.07)
    assert learned["conformal_score"] == pytest.approx(1.0)
    learned = e.update_from_trade_result("momentum", "BTC-USD", 0.07, predicted_return=0.0,
                                         predicted_volatility=0.07)
    assert learned["conformal_score"] == pytest.approx(1.0)


def test_conformal_goes_live_after_min_samples() -> None:
    """After 20 outcomes the conformal multiplier leaves its cold-start value."""
    e = make_engine()
    sig = make_signal()
    e.calculate_position(sig, CALM, 1.0)
    for i in range(20):
        e.update_from_trade_result(sig.strategy_id, sig.symbol, 0.02 + (0.01 if i % 2 else -0.01))
    d = e.calculate_position(sig, CALM, 1.0)
    assert d.diagnostics["conformal"]["samples"] == 20
    assert d.diagnostics["conformal"]["multiplier"] == 1.0  # small residuals: narrow interval


@pytest.mark.parametrize(("kw", "field"), [
    ({"realized_return": math.nan}, "realized_return"),
    ({"realized_return": -1.5}, "realized_return"),
    ({"realized_return": 0.01, "predicted_return": math.inf}, "predicted_return"),
    ({"realized_return": 0.01, "predicted_volatility": 0.0}, "predicted_volatility"),
    ({"realized_return": 0.01, "symbol": ""}, "symbol"),
])
def test_bad_outcome_named(kw: dict[str, Any], field: str) -> None:
    """Invalid outcomes raise InvalidOutcomeException naming the field; nothing is learned."""
    e = make_engine()
    args = {"strategy_id": "s", "symbol": "BTC", **kw}
    with pytest.raises(InvalidOutcomeException) as info:
        e.update_from_trade_result(**args)
    assert info.value.field == field
    assert e.kelly.stats_ == {}


def test_record_outcome_alias() -> None:
    """record_outcome is the same as update_from_trade_result."""
    a, b = make_engine(), make_engine()
    assert a.record_outcome("s", "BTC", 0.01) == b.update_from_trade_result("s", "BTC", 0.01)


# ----------------------------------------------------------------------- state
def _comparable(d: Any) -> dict[str, Any]:
    out = d.to_dict()
    out.pop("latency_ms")
    return out


def test_export_restore_gives_identical_decisions() -> None:
    """After export -> JSON -> restore, a fresh engine makes the same decisions."""
    clock_a, clock_b = ManualClock(), ManualClock()
    a = make_engine(clock=clock_a, allow_short=True)
    regimes = list(MarketRegime)
    for i in range(60):
        sig = make_signal(symbol=f"S{i % 4}", strategy_id=f"st{i % 3}",
                          regime=regimes[(i // 2) % 5], confidence=0.5 + (i % 9) / 20,
                          action="SELL" if i % 7 == 0 else "BUY")
        a.calculate_position(sig, CALM, 100.0)
        a.update_from_trade_result(sig.strategy_id, sig.symbol, ((i * 37) % 11 - 5) / 200)
    b = make_engine(clock=clock_b, allow_short=True)
    b.restore_state(json.loads(json.dumps(a.export_state())))
    assert b.export_state() == a.export_state()
    for i in range(20):
        sig = make_signal(symbol=f"S{i % 5}", strategy_id=f"st{i % 4}",
                          regime=regimes[i % 5], action="SELL" if i % 3 == 0 else "BUY")
        assert _comparable(a.calculate_position(sig, CALM, 100.0)) == _comparable(
            b.calculate_position(sig, CALM, 100.0))
        a.update_from_trade_result(sig.strategy_id, sig.symbol, 0.01)
        b.update_from_trade_result(sig.strategy_id, sig.symbol, 0.01)


def test_restore_rejects_wrong_version_and_shape() -> None:
    """Unknown state versions or missing parts raise StateRestoreError."""
    e = make_engine()
    with pytest.raises(StateRestoreError, match="version"):
        e.restore_state({"version": 99})
    with pytest.raises(StateRestoreError):
        e.restore_state({"version": 1, "kelly": {}})


def test_get_state_summary() -> None:
    """get_state reports counts and per-key learners."""
    e = make_engine()
    e.calculate_position(make_signal(), CALM, 1.0)
    e.update_from_trade_result("momentum", "BTC-USD", 0.01)
    s = e.get_state()
    assert s["decisions_total"] == 1 and s["kelly_keys"] == 1
    assert s["regimes"]["BTC-USD"]["long"] == "RANGING"
    assert s["conformal"]["momentum"]["samples"] == 1


# ---------------------------------------------------------- metrics and logging
def test_metrics_observer_records_decisions() -> None:
    """With an isolated Prometheus observer, decisions, invalid inputs and outcomes count."""
    obs = make_metrics_observer()
    e = make_engine(observer=obs)
    reg = obs.metrics.registry
    for _ in range(3):
        e.calculate_position(make_signal(), CALM, 1.0)
    with pytest.raises(InvalidPriceException):
        e.calculate_position(make_signal(), CALM, -1.0)
    e.update_from_trade_result("momentum", "BTC-USD", 0.01)
    assert reg.get_sample_value("himari_l3_sizing_decisions_total",
                                {"action": "BUY", "status": "PASS"}) == 3.0
    assert reg.get_sample_value("himari_l3_invalid_inputs_total", {"kind": "price"}) == 1.0
    assert reg.get_sample_value("himari_l3_outcomes_total", {"result": "win"}) == 1.0
    assert reg.get_sample_value("himari_l3_sizing_latency_seconds_count") == 3.0


def test_metrics_off_uses_null_observer() -> None:
    """enable_metrics=False writes no metrics anywhere."""
    from himari_l3.observers import NULL_OBSERVER

    assert make_engine().observer is NULL_OBSERVER


def test_no_log_line_per_decision_at_default_level(caplog: pytest.LogCaptureFixture) -> None:
    """At the default WARNING level, sizing (including rejects) writes no log lines."""
    caplog.set_level(logging.WARNING)
    e = make_engine(allow_short=True)
    for i in range(200):
        e.calculate_position(make_signal(action=["BUY", "SELL", "HOLD"][i % 3],
                                         confidence=0.3 + (i % 10) / 15),
                             STRESS_EXIT if i % 17 == 0 else CALM, 100.0)
        e.update_from_trade_result("momentum", "BTC-USD", 0.01)
    assert [r for r in caplog.records if r.name.startswith("himari_l3")] == []
