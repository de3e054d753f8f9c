"""Layer 1 readings: signed whale pressure, the netflow rescale, the missing/stale policy."""

from __future__ import annotations

import math
from typing import Any

import pytest

from himari_l3.config.schema import CascadeConfig, StreamsConfig
from himari_l3.sizing.cascade import assess_cascade
from himari_l3.streams.layer1 import (
    netflow_zscore,
    parse_price,
    parse_readings,
    resolve_readings,
    stressed_readings,
)
from himari_l3.trace import ReasonCode

NOW_MS = 1_700_000_000_000
NOW_NS = NOW_MS * 1_000_000
CFG = StreamsConfig()


def reading(**kw: Any) -> dict[str, Any]:
    """A Layer 1 hash as HGETALL returns it (decoded)."""
    base = {"funding_rate": "0.0001", "oi_change_pct": "-0.02", "volume_ratio": "1.1",
            "onchain_whale_pressure": "-0.5", "exchange_netflow_zscore": "0.4",
            "timestamp": str(NOW_MS - 1_000)}
    base.update(kw)
    return base


def test_hash_becomes_signed_readings_with_rescaled_netflow() -> None:
    """Whale pressure -0.5 (selling) is the long side's 0.5; netflow 0.4 (clip, s=3) -> 1.2."""
    ind, ts = parse_readings(reading(), CFG)
    assert ts == NOW_MS - 1_000
    assert ind.whale_flow == -0.5 and ind.onchain_whale_pressure == 0.5
    assert ind.exchange_netflow_zscore == pytest.approx(1.2)


def test_netflow_transforms_invert_layer1_compressions() -> None:
    """clip: z = s*x exactly; tanh: z = s*atanh(x); both bounded at the contract's 50."""
    for z in (-2.0, -0.5, 0.0, 1.0, 2.9):
        assert netflow_zscore(max(-1.0, min(1.0, z / 3.0)), "clip", 3.0) == pytest.approx(z)
        assert netflow_zscore(math.tanh(z / 3.0), "tanh", 3.0) == pytest.approx(z)
    assert netflow_zscore(1.0, "clip", 3.0) == 3.0
    assert netflow_zscore(1.0, "tanh", 3.0) == pytest.approx(3.0 * math.atanh(1 - 1e-12))
    assert netflow_zscore(-1.0, "tanh", 10.0) == -50.0


def test_saturated_clip_reading_saturates_the_component() -> None:
    """x = 1 under clip reads z = 3, the netflow component's default saturation point."""
    ind, _ = parse_readings(reading(exchange_netflow_zscore="1"), CFG)
    assert assess_cascade(CascadeConfig(), ind).components["netflow_zscore"] == 1.0


@pytest.mark.parametrize("policy", ["neutral", "stressed"])
def test_missing_stale_and_invalid_readings_follow_the_policy(policy: str) -> None:
    """Absent, older than l1_max_age_ms, or invalid: the policy's readings, with a note."""
    cfg = StreamsConfig(l1_missing_policy=policy, l1_max_age_ms=5_000)  # type: ignore[arg-type]
    raw = {"A": reading(), "B": None, "C": reading(timestamp=str(NOW_MS - 6_000)),
           "D": reading(volume_ratio="nan")}
    out, notes = resolve_readings(["A", "B", "C", "D"], raw, NOW_NS, cfg, CascadeConfig())
    assert set(notes) == {"B", "C", "D"}
    assert notes["B"].code is ReasonCode.LAYER1_MISSING
    assert notes["C"].code is ReasonCode.LAYER1_STALE and notes["C"].age_ms == 6_000
    assert notes["D"].code is ReasonCode.LAYER1_INVALID and "volume_ratio" in notes["D"].detail
    assert all(n.policy == policy for n in notes.values())
    score = assess_cascade(CascadeConfig(), out["B"]).score
    assert score == (0.0 if policy == "neutral" else 1.0)
    assert out["A"].whale_flow == -0.5


def test_stressed_readings_score_one_under_any_weights() -> None:
    """Every component at its threshold: score 1, EXIT under the default bands."""
    cas = assess_cascade(CascadeConfig(), stressed_readings(CascadeConfig()))
    assert cas.score == 1.0 and cas.recommendation.value == "EXIT"


def test_prices() -> None:
    """A price is a finite number > 0; anything else is no price."""
    assert parse_price(b"50000.5") == 50_000.5 and parse_price("1") == 1.0
    for bad in (None, b"nan", "0", "-3", "inf", b"\xff", True, "abc"):
        assert parse_price(bad) is None
