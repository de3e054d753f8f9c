"""The reference RL policy: a small, bounded linear-tanh model over signal features.

It exists so that "real RL" mode runs end to end on one machine, and so the HTTP contract has a
second, independent implementation. It is deliberately simple and fully documented.

Model. With ``d ∈ {-1, 0, +1}`` the signal's direction (BUY/STRONG_BUY +1, HOLD 0, SELL/
STRONG_SELL −1) and ``x`` the features below, all measured *relative to the trade's direction*::

    z          = max(0, b + Σ_i w_i · x_i)            conviction for the proposed trade (≥ 0)
    position   = d · max_position · tanh(z)            ∈ [−max_position, max_position]
    confidence = σ(confidence_scale · z + confidence_bias)   ∈ (0, 1),  σ = logistic
    return     = d · return_scale · tanh(z)            ∈ [−return_scale, return_scale]
    volatility = signal.predicted_volatility  or  default_volatility · (1 + stress)

Features ``x``: ``confidence``, ``expected_return`` (0 if absent), ``risk_score``,
``signal_strength`` (0 if absent), ``sentiment_agreement`` = d·(2·sentiment_score − 1)·
sentiment_confidence (0 if absent), ``trend_agreement`` = d·(+1 TRENDING_UP, −1 TRENDING_DOWN,
else 0), ``stress`` (1 CRISIS, 0.5 HIGH_VOLATILITY, else 0), ``strong`` (1 for STRONG_*).

Clipping ``z`` at 0 means the policy sizes Layer 2's trade but never reverses it, and HOLD
always maps to position 0; Layer 3 re-applies its own limits to whatever the model says anyway.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

from .._exceptions import ConfigError
from ..contracts import MarketRegime, TacticalAction, TacticalSignal

__all__ = ["FEATURES", "RLPolicy"]

FEATURES: Final = ("confidence", "expected_return", "risk_score", "signal_strength",
                   "sentiment_agreement", "trend_agreement", "stress", "strong")

_FORMAT: Final = "himari-l3-rl-policy"
_STRESS = {MarketRegime.CRISIS: 1.0, MarketRegime.HIGH_VOLATILITY: 0.5}
_TREND = {MarketRegime.TRENDING_UP: 1.0, MarketRegime.TRENDING_DOWN: -1.0}
_SCALARS: Final = {  # name: (low, high) allowed in a model file
    "bias": (-100.0, 100.0),
    "max_position": (1e-9, 1.0),
    "confidence_scale": (-100.0, 100.0),
    "confidence_bias": (-100.0, 100.0),
    "return_scale": (0.0, 1.0),
    "default_volatility": (1e-9, 2.5),
}


def features(signal: TacticalSignal) -> dict[str, float]:
    """The policy's inputs for ``signal``, relative to its direction (see the module doc)."""
    d = float(signal.action.direction)
    sentiment = 0.0
    if signal.sentiment_score is not None:
        sentiment = d * (2.0 * signal.sentiment_score - 1.0) * (
            signal.sentiment_confidence if signal.sentiment_confidence is not None else 1.0)
    return {
        "confidence": signal.confidence,
        "expected_return": signal.expected_return or 0.0,
        "risk_score": signal.risk_score,
        "signal_strength": signal.signal_strength or 0.0,
        "sentiment_agreement": sentiment,
        "trend_agreement": d * _TREND.get(signal.regime, 0.0),
        "stress": _STRESS.get(signal.regime, 0.0),
        "strong": 1.0 if signal.action in (TacticalAction.STRONG_BUY,
                                           TacticalAction.STRONG_SELL) else 0.0,
    }


@dataclass(frozen=True, slots=True)
class RLPolicy:
    """Parameters of the reference policy (loaded from / saved to a JSON model file)."""

    model_version: str
    weights: dict[str, float] = field(default_factory=dict)
    bias: float = 0.0
    max_position: float = 0.25
    confidence_scale: float = 2.0
    confidence_bias: float = 0.0
    return_scale: float = 0.05
    default_volatility: float = 0.03

    def __post_init__(self) -> None:
        version = self.model_version
        if not isinstance(version, str) or not version.strip() or len(version) > 128:
            raise ConfigError(f"model_version was {version!r}, expected a non-empty string "
                              "of at most 128 characters")
        if not isinstance(self.weights, dict) or set(self.weights) != set(FEATURES):
            got = sorted(self.weights) if isinstance(self.weights, dict) else self.weights
            raise ConfigError(f"weights had keys {got!r}, expected exactly {sorted(FEATURES)}")
        for name, w in self.weights.items():
            _check(f"weights.{name}", w, -1000.0, 1000.0)
        for name, (lo, hi) in _SCALARS.items():
            _check(name, getattr(self, name), lo, hi)

    def predict(self, signal: TacticalSignal) -> dict[str, Any]:
        """The model's answer for ``signal`` in the wire format of the RL contract."""
        x = features(signal)
        d = float(signal.action.direction)
        z = max(0.0, self.bias + sum(self.weights[k] * x[k] for k in FEATURES))
        strength = math.tanh(z)
        vol = signal.predicted_volatility or self.default_volatility * (1.0 + x["stress"])
        return {
            "position_pct": d * self.max_position * strength,
            "confidence": 1.0 / (1.0 + math.exp(-(self.confidence_scale * z
                                                 + self.confidence_bias))),
            "predicted_return": d * self.return_scale * strength,
            "predicted_volatility": min(vol, 5.0),
            "model_version": self.model_version,
        }

    # -- model files -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON model-file representation."""
        return {"format": _FORMAT, "format_version": 1, "model_version": self.model_version,
                "weights": {k: self.weights[k] for k in FEATURES},
                **{name: getattr(self, name) for name in _SCALARS}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RLPolicy:
        """Parse a model file's content; unknown or missing keys raise `ConfigError`."""
        if not isinstance(data, dict):
            raise ConfigError(f"RL model file must hold a JSON object, got {type(data).__name__}")
        if data.get("format") != _FORMAT or data.get("format_version") != 1:
            raise ConfigError(f"format/format_version were {data.get('format')!r}/"
                              f"{data.get('format_version')!r}, expected {_FORMAT!r}/1")
        allowed = {"format", "format_version", "model_version", "weights", *_SCALARS}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ConfigError(f"unknown key {unknown[0]!r} in RL model file")
        missing = sorted(allowed - set(data))
        if missing:
            raise ConfigError(f"missing key {missing[0]!r} in RL model file")
        return cls(model_version=data["model_version"], weights=dict(data["weights"]),
                   **{name: data[name] for name in _SCALARS})

    @classmethod
    def load(cls, path: str | Path) -> RLPolicy:
        """Load a JSON model file (errors name the file and the offending key)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ConfigError(f"cannot read RL model file {str(path)!r}: {err}") from None
        try:
            return cls.from_dict(data)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None

    @classmethod
    def default(cls) -> RLPolicy:
        """The policy shipped with the package (``himari_l3/data/rl_policy_default.json``)."""
        text = (resources.files("himari_l3") / "data" / "rl_policy_default.json").read_text(
            encoding="utf-8")
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        """Write the model file (pretty-printed, stable key order)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")


def _check(name: str, value: object, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        math.isfinite(value) and lo <= value <= hi
    ):
        raise ConfigError(f"{name} was {value!r}, expected a finite number in [{lo:g}, {hi:g}]")
