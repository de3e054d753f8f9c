"""Layer 2's decisions as `TacticalSignal`s (pure; docs/integration.md has the mapping).

Two forms, told apart by their fields:

* **direction** (what Layer 2 publishes): ``timestamp`` (ms), ``symbol`` (``BTCUSDT``),
  ``direction`` 0 FLAT / 1 LONG / 2 SHORT, ``direction_label``, ``confidence``,
  ``prob_flat``/``prob_long``/``prob_short``, ``current_regime``, ``executing_strategy_id``,
  ``total_uncertainty``, ``ood_detected``, ``urgency``, ``max_slippage_bps``,
  ``time_in_force``; any other field is tolerated and ignored;
* **action** (the five-level form): ``action`` STRONG_BUY…STRONG_SELL, ``confidence``,
  ``implicit_tier`` (1–4 or ``"T2"``), ``regime``, ``timestamp`` (ms), ``strategy_id``?,
  ``symbol``?.

A message is never guessed into a trade: a missing or malformed field, fields that
contradict each other, an unknown regime, action or symbol, or a timestamp further than
``streams.max_signal_age_ms`` from the loop's clock raise `MessageRejected` (the consumer
dead-letters the message with that reason). CRISIS, in any spelling, is CRISIS: the regime
map tests for it before anything else. Uncertainty never adds size: an out-of-distribution
input, Layer 2's own NaN flag, or ``total_uncertainty`` above
``streams.hold_above_uncertainty`` turn the signal into HOLD (which never increases
exposure); below that, the uncertainty is the signal's ``risk_score``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._exceptions import ValidationError
from ..config.schema import StreamsConfig
from ..contracts import MarketRegime, TacticalAction, TacticalSignal
from .wire import MessageRejected, RejectCode, flag, integer, number, text

__all__ = ["Layer2Signal", "map_regime", "map_symbol", "parse_layer2"]

_MS = 1_000_000
_MAX_MS = (2**63 - 1) // _MS  # a timestamp in ns must fit in int64

# Layer 2's regime vocabularies, normalised (upper case, "_" for "-" and spaces). Anything
# that contains CRISIS is CRISIS (tested first); anything else not listed is refused.
_REGIMES: dict[str, MarketRegime] = {
    **{k: MarketRegime.TRENDING_UP for k in (
        "TRENDING_UP", "TREND_UP", "UPTREND", "UP_TREND", "BULL", "BULLISH", "BULL_MARKET")},
    **{k: MarketRegime.TRENDING_DOWN for k in (
        "TRENDING_DOWN", "TREND_DOWN", "DOWNTREND", "DOWN_TREND", "BEAR", "BEARISH",
        "BEAR_MARKET")},
    **{k: MarketRegime.RANGING for k in (
        "RANGING", "RANGE", "RANGE_BOUND", "SIDEWAYS", "MEAN_REVERTING", "LOW_VOL",
        "LOW_VOLATILITY")},
    **{k: MarketRegime.HIGH_VOLATILITY for k in (
        "HIGH_VOLATILITY", "HIGH_VOL", "VOLATILE")},
    **{k: MarketRegime.CRISIS for k in ("CRISIS", "CRISIS_FLIGHT", "FLIGHT_TO_SAFETY")},
}
_DIRECTIONS = {0: ("FLAT", TacticalAction.HOLD), 1: ("LONG", TacticalAction.BUY),
               2: ("SHORT", TacticalAction.SELL)}
_TIME_IN_FORCE = frozenset({"GTC", "IOC", "FOK", "GTD", "DAY", "PO"})
_TIER = re.compile(r"^T?([1-4])$")
_PROB_TOLERANCE = 0.01


@dataclass(frozen=True, slots=True)
class Layer2Signal:
    """A Layer 2 message as Layer 3 takes it: the signal (Layer 3's symbol), the symbol it
    arrived with, its execution hints (passed through to Layer 4) and what the mapping did
    (``notes``: why a signal became HOLD)."""

    signal: TacticalSignal
    venue_symbol: str
    hints: Mapping[str, Any]
    notes: tuple[str, ...]


def _norm(value: str) -> str:
    return re.sub(r"[\s\-]+", "_", value.strip().upper())


def map_regime(value: object, field: str = "regime") -> MarketRegime:
    """Any of Layer 2's regime spellings as a `MarketRegime`; unknown ones are refused."""
    if not isinstance(value, str) or not value.strip():
        raise MessageRejected(RejectCode.MALFORMED, field, value, "a regime name")
    key = _norm(value)
    if "CRISIS" in key:
        return MarketRegime.CRISIS
    regime = _REGIMES.get(key)
    if regime is None:
        raise MessageRejected(RejectCode.UNKNOWN_REGIME, field, value,
                              "a known regime (docs/integration.md lists them)")
    return regime


def map_symbol(venue: str, symbol_map: Mapping[str, str]) -> str:
    """Layer 3's name for a Layer 2/1 symbol: as given when the map is empty, else mapped
    (a symbol already in Layer 3's naming is accepted as itself)."""
    if not symbol_map:
        return venue
    mapped = symbol_map.get(venue)
    if mapped is not None:
        return mapped
    if venue in symbol_map.values():
        return venue
    raise MessageRejected(RejectCode.UNKNOWN_SYMBOL, "symbol", venue,
                          "a symbol of streams.symbol_map")


def parse_layer2(msg: Mapping[str, Any], config: StreamsConfig, now_ns: int) -> Layer2Signal:
    """The signal a Layer 2 message asks for (see the module docstring), or
    `MessageRejected` naming the field."""
    if "direction" in msg:
        action, risk, regime, notes, hints = _direction_form(msg, config)
    elif "action" in msg:
        action, risk, regime, notes, hints = _action_form(msg)
    else:
        raise MessageRejected(RejectCode.MALFORMED, "direction", None,
                              "a direction (0/1/2) or an action (STRONG_BUY..STRONG_SELL)")
    ts_ns = _timestamp(msg, config, now_ns)
    venue = text(msg, "symbol") or config.default_symbol
    if venue is None:
        raise MessageRejected(RejectCode.MALFORMED, "symbol", None,
                              "a symbol (or streams.default_symbol)")
    symbol = map_symbol(venue, config.symbol_map)
    strategy = (text(msg, "executing_strategy_id") or text(msg, "strategy_id")
                or config.default_strategy_id)
    confidence = number(msg, "confidence", 0.0, 1.0, required=True)
    assert confidence is not None  # required=True raises instead
    try:
        signal = TacticalSignal(strategy, symbol, action, confidence, risk, regime, ts_ns)
    except ValidationError as err:  # e.g. a symbol the contract refuses
        raise MessageRejected(RejectCode.MALFORMED, err.field, err.value, err.expected) from None
    return Layer2Signal(signal, venue, hints, notes)


def _timestamp(msg: Mapping[str, Any], config: StreamsConfig, now_ns: int) -> int:
    ms = integer(msg, "timestamp", 0, _MAX_MS, required=True)
    assert ms is not None
    ts_ns = ms * _MS
    age_ms = (now_ns - ts_ns) / _MS
    if abs(age_ms) > config.max_signal_age_ms:
        raise MessageRejected(RejectCode.STALE, "timestamp", ms,
                              f"within streams.max_signal_age_ms "
                              f"({config.max_signal_age_ms} ms) of the loop's clock "
                              f"(it is {age_ms:+.0f} ms old)")
    return ts_ns


_Mapped = tuple[TacticalAction, float, MarketRegime, tuple[str, ...], dict[str, Any]]


def _direction_form(msg: Mapping[str, Any], config: StreamsConfig) -> _Mapped:
    direction = integer(msg, "direction", 0, 2, required=True)
    assert direction is not None
    label, action = _DIRECTIONS[direction]
    given = text(msg, "direction_label")
    if given is not None and given.upper() != label:
        raise MessageRejected(RejectCode.INCONSISTENT, "direction_label", given,
                              f"{label} (direction is {direction})")
    _check_probabilities(msg)
    raw_regime = msg.get("current_regime", msg.get("regime"))
    regime = map_regime(raw_regime, "current_regime")
    uncertainty = number(msg, "total_uncertainty", 0.0, 1e6) or 0.0
    notes: list[str] = []
    if flag(msg, "ood_detected"):
        notes.append("ood_detected: HOLD")
    if flag(msg, "nan_inf_detected"):
        notes.append("nan_inf_detected: HOLD")
    if uncertainty > config.hold_above_uncertainty:
        notes.append(f"total_uncertainty {uncertainty:g} > streams.hold_above_uncertainty "
                     f"{config.hold_above_uncertainty:g}: HOLD")
    risk = min(1.0, uncertainty)
    if notes:
        action, risk = TacticalAction.HOLD, 1.0
    return action, risk, regime, tuple(notes), _hints(msg)


def _check_probabilities(msg: Mapping[str, Any]) -> None:
    probs = [number(msg, f"prob_{k}", 0.0, 1.0) for k in ("flat", "long", "short")]
    if all(p is not None for p in probs):
        total = sum(p for p in probs if p is not None)
        if abs(total - 1.0) > _PROB_TOLERANCE:
            raise MessageRejected(RejectCode.INCONSISTENT, "prob_flat+prob_long+prob_short",
                                  total, f"1 (within {_PROB_TOLERANCE})")


def _hints(msg: Mapping[str, Any]) -> dict[str, Any]:
    """Execution hints for Layer 4, validated and passed through."""
    hints: dict[str, Any] = {}
    urgency = text(msg, "urgency", max_len=32)
    if urgency is not None:
        hints["urgency"] = urgency.lower()
    slippage = number(msg, "max_slippage_bps", 0.0, 10_000.0)
    if slippage is not None:
        hints["max_slippage_bps"] = slippage
    tif = text(msg, "time_in_force", max_len=8)
    if tif is not None:
        if tif.upper() not in _TIME_IN_FORCE:
            raise MessageRejected(RejectCode.MALFORMED, "time_in_force", tif,
                                  f"one of {', '.join(sorted(_TIME_IN_FORCE))}")
        hints["time_in_force"] = tif.upper()
    return hints


def _action_form(msg: Mapping[str, Any]) -> _Mapped:
    raw = text(msg, "action", required=True, max_len=32)
    assert raw is not None  # required=True raises instead
    try:
        action = TacticalAction(raw)
    except ValueError:
        raise MessageRejected(RejectCode.UNKNOWN_ACTION, "action", raw,
                              "one of STRONG_BUY, BUY, HOLD, SELL, STRONG_SELL") from None
    regime = map_regime(msg.get("regime", msg.get("current_regime")), "regime")
    return action, _tier_risk(msg), regime, (), {}


def _tier_risk(msg: Mapping[str, Any]) -> float:
    """``implicit_tier`` 1 (most trusted) .. 4 as risk_score 0, 0.25, 0.5, 0.75."""
    raw = msg.get("implicit_tier")
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "null", "none")):
        return 0.0
    m = _TIER.match(str(raw).strip().upper()) if isinstance(raw, (str, int)) else None
    if m is None or isinstance(raw, bool):
        raise MessageRejected(RejectCode.MALFORMED, "implicit_tier", raw,
                              "a tier 1..4 or T1..T4")
    return (int(m.group(1)) - 1) / 4.0
