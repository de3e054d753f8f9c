"""Stream parsers under hypothesis: any malformed message is refused with a reason and never
becomes a trade; CRISIS in any spelling is CRISIS; a valid message keeps its meaning."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from himari_l3 import MarketRegime, TacticalAction
from himari_l3.config.schema import StreamsConfig
from himari_l3.streams.layer1 import parse_readings
from himari_l3.streams.layer2 import map_regime, parse_layer2
from himari_l3.streams.wire import MessageRejected, RejectCode, decode_entry

NOW_MS = 1_700_000_000_000
NOW_NS = NOW_MS * 1_000_000
CFG = StreamsConfig()

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
                     st.sampled_from(["nan", "inf", "-1", "1e999", "", "null", "true", "T9",
                                      "CRISIS", "LONG", "BUY", "0", "1", "2", "3"]))
_FIELDS = ["timestamp", "symbol", "direction", "direction_label", "confidence", "prob_flat",
           "prob_long", "prob_short", "current_regime", "executing_strategy_id",
           "total_uncertainty", "ood_detected", "urgency", "max_slippage_bps",
           "time_in_force", "action", "implicit_tier", "regime", "strategy_id"]


def valid_direction_message() -> st.SearchStrategy[dict[str, Any]]:
    """Valid direction-form messages, as strings (what XADD stores)."""
    def build(direction: int, conf: float, regime: str, age: int, unc: float) -> dict[str, Any]:
        return {"timestamp": str(NOW_MS - age), "symbol": "BTCUSDT", "direction": str(direction),
                "direction_label": ["FLAT", "LONG", "SHORT"][direction],
                "confidence": repr(conf), "current_regime": regime,
                "total_uncertainty": repr(unc)}
    return st.builds(build, st.integers(0, 2), st.floats(0, 1), st.sampled_from(
        ["RANGING", "bull", "BEAR", "crisis_flight", "LOW_VOL", "high_vol"]),
        st.integers(0, 59_000), st.floats(0, 0.8))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(_FIELDS), _scalars, max_size=12))
def test_any_message_is_a_valid_signal_or_refused_with_a_reason(msg: dict[str, Any]) -> None:
    """Arbitrary fields and values: either a contract-valid signal or MessageRejected."""
    try:
        out = parse_layer2(msg, CFG, NOW_NS)
    except MessageRejected as err:
        assert isinstance(err.code, RejectCode) and err.field
        return
    s = out.signal
    assert 0.0 <= s.confidence <= 1.0 and 0.0 <= s.risk_score <= 1.0
    assert s.timestamp_ns is not None and abs(s.timestamp_ns - NOW_NS) <= 60_000 * 10**6


@settings(max_examples=300, deadline=None)
@given(valid_direction_message(), st.sampled_from(["timestamp", "direction", "confidence",
                                                   "current_regime"]),
       st.one_of(st.none(), st.sampled_from(["nan", "inf", "", "-0.5", "7", "abc", "1.5",
                                             "9999999999999999999999", "NaN"])))
def test_a_corrupted_required_field_is_never_a_trade(msg: dict[str, Any], field: str,
                                                     bad: str | None) -> None:
    """Breaking any required field of a valid message gets it refused, naming that field."""
    if bad is None:
        msg.pop(field)
    else:
        msg[field] = bad
    with pytest.raises(MessageRejected) as info:
        parse_layer2(msg, CFG, NOW_NS)
    assert info.value.field == field


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=" -_", max_size=3), st.sampled_from(["crisis", "CRISIS", "Crisis",
                                                             "cRiSiS"]),
       st.text(alphabet=" -_", max_size=3), st.sampled_from(["", "_FLIGHT", "-flight",
                                                            " flight", "_MODE"]))
def test_crisis_in_any_spelling_is_crisis(pre: str, core: str, sep: str, post: str) -> None:
    """Case, separators and suffixes around CRISIS never loosen the regime."""
    assert map_regime(pre + core + sep + post) is MarketRegime.CRISIS


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_regime_strings_map_or_are_refused(value: str) -> None:
    """Any string: a regime (CRISIS whenever it contains CRISIS) or unknown_regime/malformed."""
    try:
        regime = map_regime(value)
    except MessageRejected as err:
        assert err.code in (RejectCode.UNKNOWN_REGIME, RejectCode.MALFORMED)
        return
    if "CRISIS" in value.upper():
        assert regime is MarketRegime.CRISIS


@settings(max_examples=200, deadline=None)
@given(valid_direction_message())
def test_valid_messages_keep_their_meaning(msg: dict[str, Any]) -> None:
    """Direction maps to its action (or HOLD), confidence is kept, CRISIS stays CRISIS."""
    out = parse_layer2(msg, CFG, NOW_NS)
    expected = [TacticalAction.HOLD, TacticalAction.BUY, TacticalAction.SELL][
        int(msg["direction"])]
    assert out.signal.action is expected
    assert out.signal.confidence == float(msg["confidence"])
    if "crisis" in msg["current_regime"].lower():
        assert out.signal.regime is MarketRegime.CRISIS


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.binary(max_size=8), st.binary(max_size=16), max_size=6))
def test_any_entry_decodes_or_is_refused(entry: dict[bytes, bytes]) -> None:
    """Arbitrary bytes never raise anything but MessageRejected."""
    try:
        out = decode_entry(entry)
    except MessageRejected:
        return
    assert isinstance(out, dict)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["funding_rate", "oi_change_pct", "volume_ratio",
                                        "onchain_whale_pressure", "exchange_netflow_zscore",
                                        "liquidation_volume_24h", "timestamp"]),
                       _scalars, max_size=7))
def test_any_layer1_hash_is_valid_readings_or_refused(fields: dict[str, Any]) -> None:
    """Layer 1 hashes: contract-valid readings with finite fields, or MessageRejected."""
    try:
        ind, _ = parse_readings(fields, CFG)
    except MessageRejected:
        return
    assert all(math.isfinite(x) for x in (ind.funding_rate, ind.oi_change_pct,
                                          ind.volume_ratio, ind.exchange_netflow_zscore))
    assert ind.whale_flow is not None and -1.0 <= ind.whale_flow <= 1.0
