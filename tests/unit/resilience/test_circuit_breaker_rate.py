"""The breaker's failure-rate rule (resilience4j style) beside the seed's count rule.

Numbers (defaults: failure_threshold 5, window_sec 60, failure_rate_threshold 0.5,
minimum_calls 10, rate_window_calls 100), all driven by a ManualClock:

* 20 decisions/s × 8 calls, 10 % failing: 19,200 calls over 120 s, the breaker stays CLOSED;
* the same load failing 60 %: it opens within the first decision (cold start), and within
  2 s when a healthy model degrades to 60 %.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from himari_l3._clock import ManualClock
from himari_l3._exceptions import ConfigError, StateRestoreError
from himari_l3.config.schema import CircuitBreakerConfig, parse_config
from himari_l3.resilience import CircuitBreaker, CircuitEvent, CircuitState

DECISIONS_PER_SEC = 20
CALLS_PER_DECISION = 8


def drive(cb: CircuitBreaker, clock: ManualClock, rng: random.Random, failure_rate: float,
          seconds: float) -> float | None:
    """Run the load for ``seconds``; return the time (s from start) the breaker opened."""
    start = clock.monotonic()
    steps = int(seconds * DECISIONS_PER_SEC)
    for _ in range(steps):
        for _ in range(CALLS_PER_DECISION):
            if not cb.allow_request():
                return clock.monotonic() - start
            if rng.random() < failure_rate:
                cb.record_failure("http_error")
            else:
                cb.record_success(0.001)
        if cb.state is not CircuitState.CLOSED:
            return clock.monotonic() - start
        clock.advance(1.0 / DECISIONS_PER_SEC)
    return None


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_ten_percent_failures_at_20_decisions_per_sec_stay_closed(seed: int) -> None:
    """A model failing 10 % of 160 calls/s keeps the breaker CLOSED for two minutes."""
    clock = ManualClock()
    events: list[CircuitEvent] = []
    cb = CircuitBreaker("rl", clock=clock, listeners=[events.append])
    opened = drive(cb, clock, random.Random(seed), 0.10, 120.0)
    state = cb.get_state()
    assert opened is None, f"opened after {opened:.2f}s: {state}"
    assert not [e for e in events if e.kind == "state_change"]
    assert state["total_failures"] > 1_500  # far beyond 5 failures in 60 s
    assert state["window_calls"] == 100


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_sixty_percent_failures_open_within_seconds(seed: int) -> None:
    """60 % failures open the breaker at once from a cold start, and within 2 s of a
    healthy model degrading (the rate looks at the last 100 calls, not the whole minute)."""
    clock = ManualClock()
    cold = CircuitBreaker("rl", clock=clock)
    opened = drive(cold, clock, random.Random(seed), 0.60, 10.0)
    assert opened is not None and opened <= 0.1
    warm = CircuitBreaker("rl", clock=clock)
    rng = random.Random(seed)
    assert drive(warm, clock, rng, 0.10, 30.0) is None
    opened = drive(warm, clock, rng, 0.60, 10.0)
    assert opened is not None and opened < 2.0, opened
    assert "calls failed" in warm.get_state()["last_transition_reason"]


def test_count_rule_still_decides_for_a_low_volume_caller() -> None:
    """Below minimum_calls the seed's rule holds: 5 failures in 60 s open, successes or not."""
    clock = ManualClock()
    cb = CircuitBreaker("rl", clock=clock)
    for outcome in "SFSFFSF":  # 7 calls, 4 failures
        (cb.record_failure("timeout") if outcome == "F" else cb.record_success())
        clock.advance(5.0)
    assert cb.state is CircuitState.CLOSED
    cb.record_failure("timeout")  # the 5th failure, 8 calls within the minute
    assert cb.state is CircuitState.OPEN
    assert "5 failures within 60s" in cb.get_state()["last_transition_reason"]


def test_rate_rule_decides_at_or_above_minimum_calls() -> None:
    """From minimum_calls on, 5 failures no longer open; a failure rate >= 50 % does."""
    clock = ManualClock()
    cb = CircuitBreaker("rl", clock=clock)
    for _ in range(6):
        cb.record_success()
    for _ in range(5):
        cb.record_failure("timeout")  # 5 of 11 = 45 %
    assert cb.state is CircuitState.CLOSED
    cb.record_failure("timeout")  # 6 of 12 = 50 %
    assert cb.state is CircuitState.OPEN
    assert cb.get_state()["last_transition_reason"].startswith("6 of 12 calls failed")


def test_rate_window_counts_only_the_last_calls_inside_the_time_window() -> None:
    """Outcomes leave the rate window after rate_window_calls newer ones, or window_sec."""
    clock = ManualClock()
    cb = CircuitBreaker("rl", clock=clock, minimum_calls=10, rate_window_calls=20)
    for _ in range(9):
        cb.record_success()
    for _ in range(4):
        cb.record_failure("timeout")
    assert cb.get_state()["window_calls"] == 13
    for _ in range(20):
        cb.record_success()
    state = cb.get_state()
    assert (state["window_calls"], state["failure_count"]) == (20, 0)
    clock.advance(60.0)
    assert cb.get_state()["window_calls"] == 0


def test_boundary_agrees_with_the_count_rule() -> None:
    """With the defaults the rules meet at 10 calls: 5 failures of 10 open either way."""
    for before in range(0, 6):
        clock = ManualClock()
        cb = CircuitBreaker("rl", clock=clock)
        for _ in range(before):
            cb.record_success()
        for _ in range(4):
            cb.record_failure("timeout")
        assert cb.state is CircuitState.CLOSED
        cb.record_failure("timeout")
        assert cb.state is CircuitState.OPEN, before  # 5 of <= 10 calls


def test_export_restore_round_trips_the_rate_window() -> None:
    """The rate window comes back from export_state: both breakers trip on the same call."""
    clock = ManualClock()
    cb = CircuitBreaker("rl", clock=clock)
    pattern = "SSSFSSFSFSSFS"  # 13 calls, 4 failures
    for outcome in pattern:
        (cb.record_failure("timeout") if outcome == "F" else cb.record_success())
        clock.advance(1.0)
    data = cb.export_state()
    assert data["version"] == 2
    other_clock = ManualClock(start=50.0)
    other = CircuitBreaker("rl", clock=other_clock)
    other.restore_state(data)
    assert other.export_state() == data
    for c in (cb, other):
        c.record_failure("timeout")
        c.record_failure("timeout")
        assert c.state is CircuitState.CLOSED  # 6 of 15 = 40 %
    for c in (cb, other):
        for _ in range(3):
            c.record_failure("timeout")
        assert c.state is CircuitState.OPEN  # 9 of 18 = 50 %


def test_restore_reads_a_version_1_export() -> None:
    """A snapshot written before the rate rule restores: its failures enter the window."""
    clock = ManualClock()
    cb = CircuitBreaker("rl", clock=clock)
    v1 = {"version": 1, "name": "rl", "state": "closed", "current_timeout_sec": 30.0,
          "consecutive_open_count": 0, "opened_ago_sec": None,
          "failure_ages_sec": [3.0, 2.0, 1.0, 0.5], "forced_open": False, "enabled": True,
          "last_failure_reason": "timeout",
          "counters": {"calls": 4, "successes": 0, "failures": 4, "rejections": 0,
                       "fallbacks": 0}}
    cb.restore_state(v1)
    assert cb.get_state()["failure_count"] == 4
    cb.record_failure("timeout")
    assert cb.state is CircuitState.OPEN
    with pytest.raises(StateRestoreError):
        cb.restore_state({**cb.export_state(), "window": [[-1.0, True]]})


def test_parameters_are_validated_with_their_names() -> None:
    """Nonsense rate parameters are refused, naming the parameter (constructor and config)."""
    with pytest.raises(ValueError, match="failure_rate_threshold"):
        CircuitBreaker(failure_rate_threshold=0.0)
    with pytest.raises(ValueError, match="minimum_calls"):
        CircuitBreaker(failure_threshold=12)  # could never fire below 10 calls
    with pytest.raises(ValueError, match="rate_window_calls"):
        CircuitBreaker(minimum_calls=200)
    cb = CircuitBreaker()
    with pytest.raises(ValueError, match="minimum_calls"):
        cb.reconfigure(minimum_calls=3)
    with pytest.raises(ConfigError, match="minimum_calls"):
        parse_config(CircuitBreakerConfig, {"failure_threshold": 20})
    cfg = parse_config(CircuitBreakerConfig, {"failure_threshold": 20, "minimum_calls": 40})
    assert (cfg.failure_rate_threshold, cfg.rate_window_calls) == (0.5, 100)


def test_reconfigure_changes_the_rate_parameters_in_place() -> None:
    """A hot reload of the rate parameters keeps the recorded window."""
    clock = ManualClock()
    cb = CircuitBreaker("rl", clock=clock)
    for outcome in "SSSSSSSSFFFF":  # 12 calls, 4 failures = 33 %
        (cb.record_failure("timeout") if outcome == "F" else cb.record_success())
    cb.reconfigure(failure_rate_threshold=0.3, minimum_calls=12, rate_window_calls=50)
    assert cb.get_state()["window_calls"] == 12
    cb.record_failure("timeout")  # 5 of 13 = 38 % >= 30 %
    assert cb.state is CircuitState.OPEN


def _opens_on_failure(calls_before: int, failures_before: int, **params: Any) -> bool:
    """Whether the real breaker opens when a failure follows the given closed-state calls
    (all within one instant, so only the counts matter)."""
    cb = CircuitBreaker("rl", clock=ManualClock(), **params)
    for _ in range(calls_before - failures_before):
        cb.record_success()
    for _ in range(failures_before):
        cb.record_failure("timeout")
    assert cb.state is CircuitState.CLOSED
    cb.record_failure("timeout")
    return cb.state is CircuitState.OPEN


def cold_start_open_probability(p: float, calls: int = 100, **params: Any) -> float:
    """Exact P(the breaker opens within the first ``calls`` calls) for a model failing each
    call independently with probability ``p``; every transition is asked of the breaker."""
    alive = {0: 1.0}  # failures so far -> probability of being here still closed
    opened = 0.0
    decided: dict[tuple[int, int], bool] = {}
    for n in range(calls):
        nxt: dict[int, float] = {}
        for f, prob in alive.items():
            nxt[f] = nxt.get(f, 0.0) + prob * (1 - p)
            key = (n, f)
            if key not in decided:
                decided[key] = _opens_on_failure(n, f, **params)
            if decided[key]:
                opened += prob * p
            else:
                nxt[f + 1] = nxt.get(f + 1, 0.0) + prob * p
        alive = nxt
    return opened


def test_cold_start_open_probability_is_the_documented_one() -> None:
    """docs/deployment.md's numbers: a p-failing model opens the breaker within its first 100
    calls with these probabilities (defaults, and minimum_calls 20 for comparison)."""
    got = [round(cold_start_open_probability(p), 4) for p in (0.1, 0.2, 0.3)]
    assert got == [0.0018, 0.0392, 0.1976]
    got20 = [round(cold_start_open_probability(p, minimum_calls=20), 3) for p in (0.1, 0.2, 0.3)]
    assert got20 == [0.035, 0.327, 0.718]
