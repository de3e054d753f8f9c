"""Data contracts: validation names field and value, Layer 2 spellings, JSON round trips."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from conftest import CASCADE_DEFAULTS, SIGNAL_DEFAULTS, make_engine, make_signal
from himari_l3 import (
    CascadeIndicators,
    EnsembleAllocation,
    InvalidCascadeIndicatorsException,
    InvalidRLPredictionException,
    InvalidSignalException,
    MarketRegime,
    PositionSizingDecision,
    RLPrediction,
    TacticalAction,
    TacticalSignal,
    ValidationError,
)

NAN, INF = math.nan, math.inf

RL_DEFAULTS: dict[str, Any] = {
    "optimal_position_pct": 0.05,
    "confidence": 0.8,
    "predicted_return": 0.01,
    "predicted_volatility": 0.04,
    "model_version": "ppo-v3",
    "latency_ms": 12.5,
    "timestamp_ns": 1_700_000_000_000_000_000,
}


def _assert_names(err: ValidationError, field: str, value: object) -> None:
    msg = str(err)
    assert err.field == field
    assert msg.startswith(f"{field} was ")
    if isinstance(value, float) and math.isnan(value):
        assert "nan" in msg
    else:
        assert repr(value) in msg


# ------------------------------------------------------------------ TacticalSignal
BAD_SIGNAL_FIELDS = [
    ("strategy_id", ""), ("strategy_id", "   "), ("strategy_id", 7), ("strategy_id", None),
    ("strategy_id", "x" * 65), ("strategy_id", "a\x1fb"),
    ("symbol", ""), ("symbol", 3.5), ("symbol", None),
    ("action", "BUYY"), ("action", 1), ("action", None),
    ("regime", "moon"), ("regime", 2), ("regime", None),
    ("confidence", NAN), ("confidence", INF), ("confidence", -INF), ("confidence", 1.7),
    ("confidence", -0.01), ("confidence", "0.5"), ("confidence", None), ("confidence", True),
    ("risk_score", NAN), ("risk_score", INF), ("risk_score", 1.0001), ("risk_score", -1.0),
    ("risk_score", "high"),
    ("timestamp_ns", -1), ("timestamp_ns", 1.5), ("timestamp_ns", "now"),
    ("timestamp_ns", True), ("timestamp_ns", NAN), ("timestamp_ns", 2**63),
    ("expected_return", NAN), ("expected_return", INF), ("expected_return", -INF),
    ("expected_return", 1.5), ("expected_return", -1.01), ("expected_return", "2%"),
    ("predicted_volatility", NAN), ("predicted_volatility", INF), ("predicted_volatility", 0.0),
    ("predicted_volatility", -0.05), ("predicted_volatility", 5.01),
    ("predicted_volatility", "5%"),
    ("signal_strength", NAN), ("signal_strength", 1.1), ("signal_strength", -0.1),
    ("signal_strength", INF),
    ("sentiment_score", NAN), ("sentiment_score", 1.5), ("sentiment_score", -0.2),
    ("sentiment_score", INF),
    ("sentiment_confidence", NAN), ("sentiment_confidence", 2.0),
    ("sentiment_confidence", -1e-9), ("sentiment_confidence", -INF),
]


@pytest.mark.parametrize(("field", "value"), BAD_SIGNAL_FIELDS)
def test_signal_rejects_bad_field_naming_it(field: str, value: object) -> None:
    """Each invalid TacticalSignal field raises InvalidSignalException naming field and value."""
    with pytest.raises(InvalidSignalException) as info:
        make_signal(**{field: value})
    _assert_names(info.value, field, value)


def test_signal_error_message_states_allowed_range() -> None:
    """The message gives the allowed range, e.g. confidence in [0, 1]."""
    with pytest.raises(InvalidSignalException, match=r"confidence was 1\.7, expected 0 <= "
                                                     r"confidence <= 1"):
        make_signal(confidence=1.7)


@pytest.mark.parametrize("field", ["expected_return", "sentiment_score", "sentiment_confidence",
                                   "signal_strength", "confidence", "risk_score"])
def test_signal_zero_is_a_value(field: str) -> None:
    """0 is accepted and kept as 0.0 (not turned into None or a default)."""
    sig = make_signal(**{field: 0.0})
    assert getattr(sig, field) == 0.0
    assert getattr(sig, field) is not None


def test_signal_optional_fields_stay_none() -> None:
    """Absent optional fields stay None: no silent defaults."""
    sig = TacticalSignal("s", "BTC", "BUY", 0.5, 0.5, "RANGING", 0)
    assert (sig.expected_return, sig.predicted_volatility, sig.signal_strength,
            sig.sentiment_score, sig.sentiment_confidence) == (None,) * 5


def test_signal_int_fields_become_float() -> None:
    """Integer inputs for float fields are stored as floats."""
    sig = make_signal(confidence=1, risk_score=0, expected_return=0)
    assert type(sig.confidence) is float and type(sig.expected_return) is float


@pytest.mark.parametrize(("spelling", "regime"), [
    ("crisis_flight", MarketRegime.CRISIS), ("CRISIS_FLIGHT", MarketRegime.CRISIS),
    ("Crisis-Flight", MarketRegime.CRISIS), ("crisis", MarketRegime.CRISIS),
    ("trending_up", MarketRegime.TRENDING_UP), ("TRENDING_UP", MarketRegime.TRENDING_UP),
    ("trending_down", MarketRegime.TRENDING_DOWN), ("ranging", MarketRegime.RANGING),
    ("high_volatility", MarketRegime.HIGH_VOLATILITY), ("HIGH_VOL", MarketRegime.HIGH_VOLATILITY),
    (" sideways ", MarketRegime.RANGING), ("uptrend", MarketRegime.TRENDING_UP),
    ("downtrend", MarketRegime.TRENDING_DOWN),
])
def test_layer2_regime_spellings(spelling: str, regime: MarketRegime) -> None:
    """Layer 2 regime spellings map case-insensitively onto MarketRegime."""
    assert make_signal(regime=spelling).regime is regime
    assert MarketRegime(spelling) is regime


@pytest.mark.parametrize(("spelling", "action"), [
    ("buy", TacticalAction.BUY), ("strong_buy", TacticalAction.STRONG_BUY),
    ("Strong-Sell", TacticalAction.STRONG_SELL), ("hold", TacticalAction.HOLD),
])
def test_action_spellings(spelling: str, action: TacticalAction) -> None:
    """Actions are case-insensitive too."""
    assert make_signal(action=spelling).action is action


def test_action_direction() -> None:
    """Buys are +1, sells -1, HOLD 0."""
    assert [a.direction for a in TacticalAction] == [1, 1, 0, -1, -1]


# --------------------------------------------------------------- CascadeIndicators
BAD_CASCADE_FIELDS = [
    ("funding_rate", NAN), ("funding_rate", INF), ("funding_rate", 1.5), ("funding_rate", -1.5),
    ("funding_rate", "0.01"), ("funding_rate", None),
    ("oi_change_pct", NAN), ("oi_change_pct", -INF), ("oi_change_pct", -1.2),
    ("oi_change_pct", 11.0), ("oi_change_pct", None),
    ("volume_ratio", NAN), ("volume_ratio", INF), ("volume_ratio", -0.1),
    ("volume_ratio", 1001.0), ("volume_ratio", "2x"),
    ("onchain_whale_pressure", NAN), ("onchain_whale_pressure", 1.1),
    ("onchain_whale_pressure", -0.1), ("onchain_whale_pressure", False),
    ("exchange_netflow_zscore", NAN), ("exchange_netflow_zscore", INF),
    ("exchange_netflow_zscore", 51.0), ("exchange_netflow_zscore", -51.0),
    ("liquidation_volume_24h", NAN), ("liquidation_volume_24h", INF),
    ("liquidation_volume_24h", -1.0), ("liquidation_volume_24h", 2e13),
]


@pytest.mark.parametrize(("field", "value"), BAD_CASCADE_FIELDS)
def test_cascade_rejects_bad_field_naming_it(field: str, value: object) -> None:
    """Each invalid CascadeIndicators field raises the named exception naming field and value."""
    with pytest.raises(InvalidCascadeIndicatorsException) as info:
        CascadeIndicators(**{**CASCADE_DEFAULTS, field: value})
    _assert_names(info.value, field, value)


def test_cascade_zero_readings_are_values() -> None:
    """All-zero readings are accepted as they are."""
    c = CascadeIndicators(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert c.liquidation_volume_24h == 0.0 and c.volume_ratio == 0.0


# ------------------------------------------------------------------- RLPrediction
BAD_RL_FIELDS = [
    ("optimal_position_pct", NAN), ("optimal_position_pct", 1.5), ("optimal_position_pct", -1.5),
    ("optimal_position_pct", INF), ("confidence", NAN), ("confidence", 1.2),
    ("predicted_return", NAN), ("predicted_return", 2.0), ("predicted_volatility", -0.1),
    ("predicted_volatility", INF), ("model_version", ""), ("model_version", 3),
    ("latency_ms", -1.0), ("latency_ms", NAN),
]


@pytest.mark.parametrize(("field", "value"), BAD_RL_FIELDS)
def test_rl_prediction_rejects_bad_field_naming_it(field: str, value: object) -> None:
    """Each invalid RLPrediction field raises InvalidRLPredictionException naming it."""
    with pytest.raises(InvalidRLPredictionException) as info:
        RLPrediction(**{**RL_DEFAULTS, field: value})
    _assert_names(info.value, field, value)


@pytest.mark.parametrize("value", [-1, "now", NAN])
def test_rl_prediction_rejects_bad_timestamp(value: object) -> None:
    """A negative, non-integer or NaN RLPrediction.timestamp_ns is rejected."""
    with pytest.raises(InvalidRLPredictionException):
        RLPrediction(**{**RL_DEFAULTS, "timestamp_ns": value})


# ------------------------------------------------------------------ JSON round trip
def _json_round_trip(record: Any) -> Any:
    text = json.dumps(record.to_dict(), allow_nan=False)  # strict JSON, as HTTP clients need
    return type(record).from_dict(json.loads(text))


def test_signal_json_round_trip() -> None:
    """TacticalSignal survives to_dict -> strict JSON -> from_dict unchanged."""
    sig = make_signal(sentiment_score=0.8, sentiment_confidence=0.5, signal_strength=0.0,
                      regime="crisis_flight", action="strong_sell")
    back = _json_round_trip(sig)
    assert back == sig
    assert back.action is TacticalAction.STRONG_SELL and back.regime is MarketRegime.CRISIS


def test_signal_to_dict_is_plain_json() -> None:
    """to_dict gives enum values as strings, every field present."""
    d = make_signal().to_dict()
    assert d["action"] == "BUY" and d["regime"] == "RANGING"
    assert set(d) == {*SIGNAL_DEFAULTS, "signal_strength", "sentiment_score",
                      "sentiment_confidence"}


def test_cascade_json_round_trip() -> None:
    """CascadeIndicators survives a strict JSON round trip unchanged."""
    c = CascadeIndicators(-0.002, -0.15, 4.5, 0.9, 3.2, 1.5e9)
    assert _json_round_trip(c) == c


def test_rl_prediction_json_round_trip() -> None:
    """RLPrediction survives a strict JSON round trip unchanged."""
    rl = RLPrediction(**RL_DEFAULTS)
    assert _json_round_trip(rl) == rl


@pytest.mark.parametrize("signal_kw", [
    {},  # cold start: conformal quantile is unbounded
    {"expected_return": None, "predicted_volatility": None},  # no edge given: edge undefined
    {"action": "SELL"}, {"action": "HOLD"},
])
def test_decision_json_round_trip(signal_kw: dict[str, Any]) -> None:
    """A real PositionSizingDecision (trace included) survives a strict JSON round trip."""
    decision = make_engine().calculate_position(make_signal(**signal_kw),
                                                CascadeIndicators.calm(), 50_000.0,
                                                current_position_usd=1_000.0)
    back = _json_round_trip(decision)
    assert back == decision
    assert isinstance(back.reason_codes, tuple)
    assert back.current_regime is decision.current_regime


def test_decision_json_round_trip_gaussian_model() -> None:
    """The Gaussian model's trace (no payoff ratio) is strict JSON too."""
    from himari_l3.config.schema import KellyConfig, SizingConfig

    engine = make_engine(config=SizingConfig(kelly=KellyConfig(model="gaussian")))
    decision = engine.calculate_position(make_signal(), CascadeIndicators.calm(), 100.0)
    assert _json_round_trip(decision) == decision


def test_ensemble_allocation_json_round_trip() -> None:
    """EnsembleAllocation (with breakdown, provenance and trace) survives strict JSON."""
    alloc = EnsembleAllocation(
        allocations={"BTC-USD": 12_000.0, "ETH-USD": -4_000.0}, total_allocated_usd=16_000.0,
        portfolio_value=100_000.0, utilization_pct=16.0,
        strategy_weights={"momentum": 0.75, "meanrev": 0.25}, drifted_strategies=["meanrev"],
        max_drift_pct=22.5, correlation_penalties={"ETH-USD": 0.1}, timestamp_ns=5,
        breakdown={"momentum": {"BTC-USD": 12_000.0}, "meanrev": {"ETH-USD": -4_000.0}},
        provenance={"BTC-USD": {"path": "rl", "reason": "ok"}},
        binding_limits={"BTC-USD": "none", "ETH-USD": "position"},
        rejected_signals=[{"code": "invalid", "field": "confidence"}],
        trace={"stages": ["phase1", "limits"]},
    )
    back = _json_round_trip(alloc)
    assert back == alloc and back.num_positions == 2


def test_ensemble_allocation_rejects_nan_allocation() -> None:
    """A NaN allocation is refused, naming the symbol."""
    with pytest.raises(ValidationError, match=r"allocations\[BTC\]"):
        EnsembleAllocation({"BTC": NAN}, 0.0, 1.0, 0.0, {}, [], 0.0, {}, 0)


@pytest.mark.parametrize(("cls", "base", "exc"), [
    (TacticalSignal, make_signal().to_dict(), InvalidSignalException),
    (CascadeIndicators, CascadeIndicators.calm().to_dict(), InvalidCascadeIndicatorsException),
    (RLPrediction, RL_DEFAULTS, InvalidRLPredictionException),
    (EnsembleAllocation, EnsembleAllocation({}, 0.0, 1.0, 0.0, {}, [], 0.0, {}, 0).to_dict(),
     ValidationError),
])
def test_from_dict_rejects_unknown_keys(cls: Any, base: dict[str, Any], exc: type) -> None:
    """An unknown key is rejected by name, not ignored."""
    with pytest.raises(exc) as info:
        cls.from_dict({**base, "confidance": 0.5})
    assert info.value.field == "confidance"


def test_decision_from_dict_rejects_unknown_keys() -> None:
    """PositionSizingDecision.from_dict also refuses unknown keys."""
    d = make_engine().calculate_position(make_signal(), CascadeIndicators.calm(), 1.0).to_dict()
    with pytest.raises(ValidationError, match="extra"):
        PositionSizingDecision.from_dict({**d, "extra": 1})


def test_from_dict_missing_field_is_named_error() -> None:
    """A missing required field raises the contract's exception, not a bare TypeError."""
    d = make_signal().to_dict()
    del d["confidence"]
    with pytest.raises(InvalidSignalException, match="confidence"):
        TacticalSignal.from_dict(d)


def test_from_dict_rejects_non_object() -> None:
    """from_dict of a list raises the contract's exception."""
    with pytest.raises(InvalidCascadeIndicatorsException):
        CascadeIndicators.from_dict([1, 2, 3])  # type: ignore[arg-type]


def test_from_dict_validates_values() -> None:
    """from_dict runs the same validation as the constructor."""
    d = make_signal().to_dict()
    with pytest.raises(InvalidSignalException, match="risk_score was 2"):
        TacticalSignal.from_dict({**d, "risk_score": 2})


def test_records_are_immutable() -> None:
    """Contracts are frozen."""
    sig = make_signal()
    with pytest.raises(AttributeError):
        sig.confidence = 0.1  # type: ignore[misc]


def test_decision_refuses_nan_size() -> None:
    """The outgoing safety net refuses a NaN position_size_usd."""
    d = make_engine().calculate_position(make_signal(), CascadeIndicators.calm(), 1.0).to_dict()
    with pytest.raises(ValidationError, match="position_size_usd"):
        PositionSizingDecision.from_dict({**d, "position_size_usd": NAN})
