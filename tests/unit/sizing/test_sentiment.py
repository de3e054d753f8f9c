"""Direction-aware sentiment multiplier."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from himari_l3.config.schema import SentimentConfig
from himari_l3.sizing.sentiment import sentiment_multiplier

CFG = SentimentConfig()


def test_defaults() -> None:
    """Default weight 0.15, neutral band 0.4-0.6, enabled."""
    assert (CFG.weight, CFG.neutral_low, CFG.neutral_high, CFG.enabled) == (0.15, 0.4, 0.6,
                                                                            True)


@pytest.mark.parametrize("score", [0.4, 0.45, 0.5, 0.55, 0.6])
@pytest.mark.parametrize("direction", [1, -1])
def test_neutral_band_changes_nothing(score: float, direction: int) -> None:
    """Inside [0.4, 0.6], edges included, the multiplier is exactly 1."""
    assert sentiment_multiplier(CFG, score, 1.0, direction) == 1.0


@pytest.mark.parametrize(("score", "direction", "expected"), [
    (1.0, 1, 1.15), (0.0, 1, 0.85), (1.0, -1, 0.85), (0.0, -1, 1.15),
    (0.8, 1, 1.075), (0.2, -1, 1.075), (0.8, -1, 0.925), (0.2, 1, 0.925),
])
def test_direction_aware_values(score: float, direction: int, expected: float) -> None:
    """Agreeing sentiment boosts up to +weight, disagreeing cuts up to -weight, linearly
    past the band."""
    assert sentiment_multiplier(CFG, score, 1.0, direction) == pytest.approx(expected)


def test_scaled_by_sentiment_confidence() -> None:
    """The effect scales with sentiment_confidence; confidence 0 means no effect."""
    assert sentiment_multiplier(CFG, 1.0, 0.5, 1) == pytest.approx(1.075)
    assert sentiment_multiplier(CFG, 1.0, 0.0, 1) == 1.0


def test_missing_confidence_counts_as_full() -> None:
    """No sentiment_confidence: the score is taken at face value (confidence 1)."""
    assert sentiment_multiplier(CFG, 1.0, None, 1) == pytest.approx(1.15)


@pytest.mark.parametrize(("cfg", "score", "direction"), [
    (SentimentConfig(enabled=False), 1.0, 1), (CFG, None, 1), (CFG, 1.0, 0),
])
def test_no_effect_cases(cfg: SentimentConfig, score: float | None, direction: int) -> None:
    """Disabled, no score, or no direction: multiplier 1."""
    assert sentiment_multiplier(cfg, score, 1.0, direction) == 1.0


@given(score=st.floats(0.0, 1.0), conf=st.none() | st.floats(0.0, 1.0),
       direction=st.sampled_from([1, -1]), weight=st.floats(0.0, 0.5))
@settings(max_examples=300, deadline=None)
def test_bounded_and_monotone(score: float, conf: float | None, direction: int,
                              weight: float) -> None:
    """m in [1-w, 1+w]; for a long it never falls as sentiment gets more bullish."""
    cfg = SentimentConfig(weight=weight)
    m = sentiment_multiplier(cfg, score, conf, direction)
    assert 1.0 - weight - 1e-12 <= m <= 1.0 + weight + 1e-12
    higher = min(1.0, score + 0.05)
    if direction == 1:
        assert sentiment_multiplier(cfg, higher, conf, 1) >= m
    else:
        assert sentiment_multiplier(cfg, higher, conf, -1) <= m
