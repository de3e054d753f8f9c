r"""Direction-aware sentiment multiplier.

Sentiment :math:`s \in [0,1]` (0 bearish, 1 bullish) inside the neutral band
``[neutral_low, neutral_high]`` changes nothing. Outside it, its signed strength
:math:`g \in [-1, 1]` (distance past the band over the room left to 0 or 1) agrees with a long
when positive and with a short when negative:
:math:`m = 1 + w \cdot g \cdot d \cdot c_s`, with :math:`d = \pm 1` the trade direction and
:math:`c_s` the sentiment confidence (1 when not given). So :math:`m \in [1-w, 1+w]`.
"""

from __future__ import annotations

from ..config.schema import SentimentConfig

__all__ = ["sentiment_multiplier"]


def sentiment_multiplier(
    config: SentimentConfig, score: float | None, confidence: float | None, direction: int
) -> float:
    """Multiplier for a trade in ``direction`` (+1 long, -1 short)."""
    if not config.enabled or score is None or direction == 0:
        return 1.0
    lo, hi = config.neutral_low, config.neutral_high
    if score > hi:
        strength = (score - hi) / (1.0 - hi) if hi < 1.0 else 0.0
    elif score < lo:
        strength = -(lo - score) / lo if lo > 0.0 else 0.0
    else:
        return 1.0
    c = 1.0 if confidence is None else confidence
    return 1.0 + config.weight * strength * direction * c
