"""The domain's enumerations: Layer 2's actions and regimes, the cascade recommendation, a
decision's validation status (``contracts`` re-exports them; ``trace`` records them)."""

from __future__ import annotations

import enum

__all__ = ["CascadeRecommendation", "MarketRegime", "TacticalAction", "ValidationStatus"]


class TacticalAction(enum.StrEnum):
    """Layer 2's decision for one strategy and symbol."""

    STRONG_BUY = "STRONG_BUY"
    BUY = "BUY"
    HOLD = "HOLD"
    SELL = "SELL"
    STRONG_SELL = "STRONG_SELL"

    @classmethod
    def _missing_(cls, value: object) -> TacticalAction | None:
        if isinstance(value, str):
            key = value.strip().upper().replace("-", "_").replace(" ", "_")
            return cls.__members__.get(key)
        return None

    @property
    def direction(self) -> int:
        """+1 for buys, -1 for sells, 0 for HOLD."""
        return _ACTION_DIRECTION[self]


_ACTION_DIRECTION = {
    TacticalAction.STRONG_BUY: 1,
    TacticalAction.BUY: 1,
    TacticalAction.HOLD: 0,
    TacticalAction.SELL: -1,
    TacticalAction.STRONG_SELL: -1,
}


class MarketRegime(enum.StrEnum):
    """Market regime. Layer 2 spellings map onto it case-insensitively (see `_REGIME_ALIASES`)."""

    TRENDING_UP = "TRENDING_UP"
    TRENDING_DOWN = "TRENDING_DOWN"
    RANGING = "RANGING"
    HIGH_VOLATILITY = "HIGH_VOLATILITY"
    CRISIS = "CRISIS"

    @classmethod
    def _missing_(cls, value: object) -> MarketRegime | None:
        if isinstance(value, str):
            key = value.strip().upper().replace("-", "_").replace(" ", "_")
            name = _REGIME_ALIASES.get(key, key)
            return cls.__members__.get(name)
        return None


# Layer 2 emits a few other spellings; they mean the same regimes.
_REGIME_ALIASES = {
    "CRISIS_FLIGHT": "CRISIS",
    "FLIGHT_TO_SAFETY": "CRISIS",
    "HIGH_VOL": "HIGH_VOLATILITY",
    "VOLATILE": "HIGH_VOLATILITY",
    "RANGE": "RANGING",
    "RANGE_BOUND": "RANGING",
    "SIDEWAYS": "RANGING",
    "MEAN_REVERTING": "RANGING",
    "TREND_UP": "TRENDING_UP",
    "UPTREND": "TRENDING_UP",
    "BULL": "TRENDING_UP",
    "TREND_DOWN": "TRENDING_DOWN",
    "DOWNTREND": "TRENDING_DOWN",
    "BEAR": "TRENDING_DOWN",
}


class CascadeRecommendation(enum.StrEnum):
    """What the cascade-risk stage recommends, from the score."""

    EXIT = "EXIT"
    REDUCE_75 = "REDUCE_75%"
    REDUCE_50 = "REDUCE_50%"
    MONITOR = "MONITOR"


class ValidationStatus(enum.StrEnum):
    """PASS: sized as computed. WARN: sized, but a limit or risk stage cut it.
    REJECT: no position (the reasons say why)."""

    PASS = "PASS"
    WARN = "WARN"
    REJECT = "REJECT"
