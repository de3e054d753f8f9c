"""Layer 2 messages as signals: both forms, every regime vocabulary, uncertainty, refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest

from himari_l3 import MarketRegime, TacticalAction
from himari_l3.config.schema import StreamsConfig
from himari_l3.streams.layer2 import map_regime, parse_layer2
from himari_l3.streams.wire import MessageRejected, RejectCode, decode_entry

NOW_MS = 1_700_000_000_000
NOW_NS = NOW_MS * 1_000_000
CFG = StreamsConfig(symbol_map={"BTCUSDT": "BTC-USD", "ETHUSDT": "ETH-USD"})


def l2(**kw: Any) -> dict[str, Any]:
    """A direction-form message as Layer 2 publishes it (fields as XADD stores them)."""
    msg = {"timestamp": str(NOW_MS - 50), "source": "layer2", "symbol": "BTCUSDT",
           "direction": "1", "direction_label": "LONG", "confidence": "0.75",
           "prob_flat": "0.1", "prob_long": "0.75", "prob_short": "0.15",
           "current_regime": "TRENDING_UP", "executing_strategy_id": "momentum_v2",
           "total_uncertainty": "0.2", "ood_detected": "false", "urgency": "normal",
           "max_slippage_bps": "10", "time_in_force": "GTC", "value_estimate": "0.3",
           "inference_latency_ms": "4.2"}
    msg.update({k: v for k, v in kw.items() if v is not None})
    for k, v in kw.items():
        if v is None:
            msg.pop(k, None)
    return msg


def five(**kw: Any) -> dict[str, Any]:
    """A five-level (action) message."""
    msg: dict[str, Any] = {"action": "STRONG_BUY", "confidence": 0.8, "implicit_tier": "T2",
                           "regime": "bull", "timestamp": NOW_MS, "strategy_id": "trend",
                           "symbol": "ETHUSDT"}
    msg.update(kw)
    return msg


def rejected(msg: dict[str, Any], config: StreamsConfig = CFG) -> MessageRejected:
    with pytest.raises(MessageRejected) as info:
        parse_layer2(msg, config, NOW_NS)
    return info.value


def test_direction_form_maps_every_field() -> None:
    """LONG -> BUY on Layer 3's symbol, confidence kept, uncertainty as risk, hints kept."""
    out = parse_layer2(l2(), CFG, NOW_NS)
    s = out.signal
    assert (s.symbol, s.strategy_id, s.action, s.confidence, s.risk_score, s.regime) == (
        "BTC-USD", "momentum_v2", TacticalAction.BUY, 0.75, 0.2, MarketRegime.TRENDING_UP)
    assert s.timestamp_ns == (NOW_MS - 50) * 1_000_000
    assert out.venue_symbol == "BTCUSDT"
    assert out.hints == {"urgency": "normal", "max_slippage_bps": 10.0, "time_in_force": "GTC"}
    assert out.notes == ()


@pytest.mark.parametrize("direction, label, action", [
    ("0", "FLAT", TacticalAction.HOLD), ("1", "LONG", TacticalAction.BUY),
    ("2", "SHORT", TacticalAction.SELL), (2, "short", TacticalAction.SELL)])
def test_directions(direction: Any, label: str, action: TacticalAction) -> None:
    """0 FLAT -> HOLD (never adds exposure), 1 LONG -> BUY, 2 SHORT -> SELL."""
    assert parse_layer2(l2(direction=direction, direction_label=label), CFG,
                        NOW_NS).signal.action is action


def test_json_data_field_form_is_the_same_message() -> None:
    """One field ``data`` holding the JSON message parses like the string fields."""
    typed = {"timestamp": NOW_MS - 50, "symbol": "BTCUSDT", "direction": 1,
             "direction_label": "LONG", "confidence": 0.75, "prob_flat": 0.1,
             "prob_long": 0.75, "prob_short": 0.15, "current_regime": "TRENDING_UP",
             "executing_strategy_id": "momentum_v2", "total_uncertainty": 0.2,
             "ood_detected": False, "urgency": "normal", "max_slippage_bps": 10,
             "time_in_force": "GTC", "transition_type": None, "feature_vector": [0.1, 0.2]}
    entry = {b"data": json.dumps(typed).encode()}
    a = parse_layer2(decode_entry(entry), CFG, NOW_NS)
    b = parse_layer2(decode_entry({k.encode(): v.encode() for k, v in l2().items()}), CFG,
                     NOW_NS)
    assert a.signal == b.signal and a.hints == b.hints


def test_five_level_form() -> None:
    """Action, tier (T2 -> risk 0.25), bull -> TRENDING_UP, strategy and symbol kept."""
    s = parse_layer2(five(), CFG, NOW_NS).signal
    assert (s.action, s.risk_score, s.regime, s.strategy_id, s.symbol) == (
        TacticalAction.STRONG_BUY, 0.25, MarketRegime.TRENDING_UP, "trend", "ETH-USD")
    for tier, risk in ((1, 0.0), ("2", 0.25), ("T3", 0.5), ("t4", 0.75)):
        assert parse_layer2(five(implicit_tier=tier), CFG, NOW_NS).signal.risk_score == risk


def test_defaults_for_strategy_and_symbol() -> None:
    """No strategy: streams.default_strategy_id; no symbol: streams.default_symbol or refused."""
    msg = five(strategy_id=None)
    msg.pop("symbol")
    assert rejected(msg).field == "symbol"
    cfg = StreamsConfig(default_symbol="SOL-USD", default_strategy_id="l2")
    s = parse_layer2(msg, cfg, NOW_NS).signal
    assert (s.symbol, s.strategy_id) == ("SOL-USD", "l2")


@pytest.mark.parametrize("spelling, regime", [
    ("CRISIS", MarketRegime.CRISIS), ("crisis", MarketRegime.CRISIS),
    ("CRISIS_FLIGHT", MarketRegime.CRISIS), ("crisis-flight", MarketRegime.CRISIS),
    ("Crisis Flight", MarketRegime.CRISIS), ("flight_to_safety", MarketRegime.CRISIS),
    ("BULL", MarketRegime.TRENDING_UP), ("bear", MarketRegime.TRENDING_DOWN),
    ("RANGE", MarketRegime.RANGING), ("Ranging", MarketRegime.RANGING),
    ("LOW_VOL", MarketRegime.RANGING), ("low-vol", MarketRegime.RANGING),
    ("HIGH_VOL", MarketRegime.HIGH_VOLATILITY), ("high_volatility", MarketRegime.HIGH_VOLATILITY),
    ("trending_up", MarketRegime.TRENDING_UP), ("TRENDING_DOWN", MarketRegime.TRENDING_DOWN)])
def test_every_regime_vocabulary_maps(spelling: str, regime: MarketRegime) -> None:
    """Upper/lower case, CRISIS_FLIGHT, BULL/BEAR/RANGE, LOW_VOL/HIGH_VOL all map."""
    assert map_regime(spelling) is regime
    assert parse_layer2(l2(current_regime=spelling), CFG, NOW_NS).signal.regime is regime


@pytest.mark.parametrize("spelling", ["SIDEWAYS_UP", "unknown", "4", "MOON"])
def test_unknown_regime_is_refused_not_guessed(spelling: str) -> None:
    """An unknown regime is dead-lettered (unknown_regime), never mapped to a guess."""
    assert rejected(l2(current_regime=spelling)).code is RejectCode.UNKNOWN_REGIME


@pytest.mark.parametrize("kw, note", [
    ({"ood_detected": "true"}, "ood_detected"),
    ({"nan_inf_detected": "1"}, "nan_inf_detected"),
    ({"total_uncertainty": "0.95"}, "total_uncertainty")])
def test_uncertainty_turns_the_signal_into_hold(kw: dict[str, Any], note: str) -> None:
    """OOD, Layer 2's NaN flag or uncertainty above the bound: HOLD with risk 1, and why."""
    out = parse_layer2(l2(**kw), CFG, NOW_NS)
    assert out.signal.action is TacticalAction.HOLD and out.signal.risk_score == 1.0
    assert any(note in n for n in out.notes)


def test_uncertainty_below_the_bound_is_the_risk_score() -> None:
    """Moderate uncertainty lowers size through risk_score (Kelly's risk multiplier)."""
    assert parse_layer2(l2(total_uncertainty="0.6"), CFG, NOW_NS).signal.risk_score == 0.6
    cfg = StreamsConfig(hold_above_uncertainty=0.5)
    assert parse_layer2(l2(total_uncertainty="0.6", symbol="X"), cfg,
                        NOW_NS).signal.action is TacticalAction.HOLD


@pytest.mark.parametrize("kw, field, code", [
    ({"direction": "3"}, "direction", RejectCode.MALFORMED),
    ({"direction": "1.5"}, "direction", RejectCode.MALFORMED),
    ({"direction": None, "action": None}, "direction", RejectCode.MALFORMED),
    ({"direction_label": "SHORT"}, "direction_label", RejectCode.INCONSISTENT),
    ({"confidence": "nan"}, "confidence", RejectCode.MALFORMED),
    ({"confidence": "1.2"}, "confidence", RejectCode.MALFORMED),
    ({"confidence": None}, "confidence", RejectCode.MALFORMED),
    ({"prob_long": "0.9"}, "prob_flat+prob_long+prob_short", RejectCode.INCONSISTENT),
    ({"current_regime": None}, "current_regime", RejectCode.MALFORMED),
    ({"symbol": "DOGEUSDT"}, "symbol", RejectCode.UNKNOWN_SYMBOL),
    ({"timestamp": None}, "timestamp", RejectCode.MALFORMED),
    ({"timestamp": str(NOW_MS - 61_000)}, "timestamp", RejectCode.STALE),
    ({"timestamp": str(NOW_MS + 61_000)}, "timestamp", RejectCode.STALE),
    ({"time_in_force": "WHENEVER"}, "time_in_force", RejectCode.MALFORMED),
    ({"max_slippage_bps": "-1"}, "max_slippage_bps", RejectCode.MALFORMED),
    ({"ood_detected": "maybe"}, "ood_detected", RejectCode.MALFORMED),
    ({"total_uncertainty": "inf"}, "total_uncertainty", RejectCode.MALFORMED),
    ({"executing_strategy_id": "x" * 65}, "executing_strategy_id", RejectCode.MALFORMED)])
def test_malformed_direction_messages_are_refused(kw: dict[str, Any], field: str,
                                                  code: RejectCode) -> None:
    """Each bad field is refused with its name and a bounded reason code."""
    err = rejected(l2(**kw))
    assert (err.field, err.code) == (field, code)


@pytest.mark.parametrize("kw, field, code", [
    ({"action": "BUY_MORE"}, "action", RejectCode.UNKNOWN_ACTION),
    ({"implicit_tier": "T5"}, "implicit_tier", RejectCode.MALFORMED),
    ({"implicit_tier": True}, "implicit_tier", RejectCode.MALFORMED),
    ({"regime": "Weird"}, "regime", RejectCode.UNKNOWN_REGIME),
    ({"confidence": True}, "confidence", RejectCode.MALFORMED)])
def test_malformed_five_level_messages_are_refused(kw: dict[str, Any], field: str,
                                                   code: RejectCode) -> None:
    """The five-level form is checked as strictly."""
    err = rejected(five(**kw))
    assert (err.field, err.code) == (field, code)


def test_an_empty_symbol_map_takes_symbols_as_given() -> None:
    """With no map, Layer 2's symbol is Layer 3's; with one, Layer 3 names pass as is."""
    assert parse_layer2(l2(symbol="BTCUSDT"), StreamsConfig(), NOW_NS).signal.symbol == (
        "BTCUSDT")
    assert parse_layer2(l2(symbol="BTC-USD"), CFG, NOW_NS).signal.symbol == "BTC-USD"
