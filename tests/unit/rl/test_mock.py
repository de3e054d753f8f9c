"""Unit tests of the seeded mock RL client."""

from __future__ import annotations

import pytest

from himari_l3._clock import ManualClock
from himari_l3._exceptions import ValidationError
from himari_l3.contracts import MarketRegime, RLPrediction, TacticalAction, TacticalSignal
from himari_l3.resilience import CircuitBreaker, CircuitState
from himari_l3.rl import MockTransformerRLClient, RLFailure


def signal(action: str = "BUY", symbol: str = "BTC-USD", confidence: float = 0.8) -> TacticalSignal:
    return TacticalSignal("momentum", symbol, TacticalAction(action), confidence, 0.3,
                          MarketRegime.TRENDING_UP,
                          timestamp_ns=1, expected_return=0.02, predicted_volatility=0.04)


def outcome(r: RLPrediction | RLFailure) -> tuple[object, ...]:
    if isinstance(r, RLFailure):
        return ("fail", r.reason)
    return ("ok", r.optimal_position_pct, r.confidence)


def test_seeded_mock_is_deterministic() -> None:
    """Two mocks with the same seed give the same answers, sync or async alike."""
    a = MockTransformerRLClient(success_rate=0.7, seed=42, latency_ms=0.0)
    b = MockTransformerRLClient(success_rate=0.7, seed=42, latency_ms=0.0)
    sigs = [signal(symbol=f"S{i}") for i in range(40)]
    assert [outcome(a.predict_sync(s)) for s in sigs] == [outcome(b.predict_sync(s))
                                                         for s in sigs]
    c = MockTransformerRLClient(success_rate=0.7, seed=43, latency_ms=0.0)
    assert [outcome(c.predict_sync(s)) for s in sigs] != [outcome(a.predict_sync(s))
                                                         for s in sigs]


async def test_async_matches_sync_sequence() -> None:
    """predict_many draws the same sequence as predict_many_sync for the same seed."""
    sigs = [signal(symbol=f"S{i}") for i in range(20)]
    sync = MockTransformerRLClient(success_rate=0.8, seed=7, latency_ms=0.0)
    asyn = MockTransformerRLClient(success_rate=0.8, seed=7, latency_ms=0.5)
    expected = [outcome(r) for r in sync.predict_many_sync(sigs)]
    got = [outcome(r) for r in await asyn.predict_many(sigs, total_deadline_sec=2.0)]
    assert got == expected


def test_success_rate_is_roughly_honoured() -> None:
    """Over 1000 calls the observed success rate is near the configured one."""
    breaker = CircuitBreaker(enabled=False)  # keep the breaker from shedding calls
    mock = MockTransformerRLClient(success_rate=0.9, seed=1, circuit_breaker=breaker)
    results = [mock.predict_sync(signal()) for _ in range(1000)]
    ok = sum(isinstance(r, RLPrediction) for r in results)
    assert 860 <= ok <= 940
    state = mock.get_state()
    assert state["total_predictions"] == 1000
    assert state["successful_predictions"] == ok
    assert set(state["failures_by_reason"]) <= {"http_error", "timeout"}


def test_prediction_follows_signal_direction() -> None:
    """Buys give positive, sells negative, HOLD zero positions, bounded by 0.1·confidence."""
    mock = MockTransformerRLClient(success_rate=1.0, seed=0)
    buy, sell, hold = (mock.predict_sync(signal(a)) for a in ("BUY", "SELL", "HOLD"))
    assert isinstance(buy, RLPrediction)
    assert isinstance(sell, RLPrediction)
    assert isinstance(hold, RLPrediction)
    assert 0 < buy.optimal_position_pct <= 0.08
    assert -0.08 <= sell.optimal_position_pct < 0
    assert hold.optimal_position_pct == 0.0
    assert buy.model_version == "mock-1"
    assert buy.predicted_return == pytest.approx(0.02)
    assert sell.predicted_return == pytest.approx(-0.02)


def test_failures_feed_the_breaker() -> None:
    """Simulated failures open the breaker, which then rejects without drawing."""
    clock = ManualClock()
    mock = MockTransformerRLClient(success_rate=0.0, seed=3, clock=clock)
    results = [mock.predict_sync(signal()) for _ in range(8)]
    reasons = [r.reason for r in results if isinstance(r, RLFailure)]
    assert set(reasons[:5]) <= {"http_error", "timeout"}
    assert reasons[5:] == ["circuit_open"] * 3
    assert mock.circuit_breaker.state is CircuitState.OPEN
    assert mock.get_state()["circuit_breaker"]["total_failures"] == 5
    clock.advance(30.0)
    mock.success_rate = 1.0
    assert isinstance(mock.predict_sync(signal()), RLPrediction)
    assert mock.circuit_breaker.state is CircuitState.CLOSED


def test_min_confidence_yields_low_confidence_failure() -> None:
    """Below min_confidence the answer is a low_confidence failure, not a breaker failure."""
    mock = MockTransformerRLClient(success_rate=1.0, seed=0, min_confidence=0.95)
    r = mock.predict_sync(signal(confidence=0.5))
    assert isinstance(r, RLFailure)
    assert r.reason == "low_confidence"
    assert mock.circuit_breaker.get_state()["total_failures"] == 0


async def test_total_deadline_turns_slow_calls_into_timeouts() -> None:
    """Calls still running at the total deadline are cancelled and reported as timeouts."""
    mock = MockTransformerRLClient(success_rate=1.0, seed=0, latency_ms=500.0)
    results = await mock.predict_many([signal(), signal("SELL")], total_deadline_sec=0.02)
    assert [r.reason for r in results if isinstance(r, RLFailure)] == ["timeout", "timeout"]
    assert mock.get_state()["failures_by_reason"] == {"timeout": 2}
    assert mock.circuit_breaker.get_state()["total_failures"] == 2


def test_bad_market_data_raises() -> None:
    """Non-finite market data is a caller error, raised before any call is made."""
    mock = MockTransformerRLClient(seed=0)
    with pytest.raises(ValidationError, match="market_data"):
        mock.predict_sync(signal(), {"price": float("nan")})
    assert mock.get_state()["total_predictions"] == 0


def test_rl_failure_rejects_unknown_reason() -> None:
    """RLFailure only carries the documented, bounded reason codes."""
    with pytest.raises(ValueError, match="reason"):
        RLFailure("BTC", "s", "kaput")


def test_no_budget_is_not_a_breaker_failure() -> None:
    """A zero deadline is a timeout for the caller but not the model's fault."""
    mock = MockTransformerRLClient(seed=0)
    r = mock.predict_sync(signal(), deadline_sec=0.0)
    assert isinstance(r, RLFailure)
    assert r.reason == "timeout"
    assert mock.circuit_breaker.get_state()["total_failures"] == 0
