"""Unit tests of the circuit breaker state machine (a ManualClock replaces every sleep)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from himari_l3._clock import ManualClock
from himari_l3._exceptions import CircuitBreakerOpenException, StateRestoreError
from himari_l3.resilience import CircuitBreaker, CircuitEvent, CircuitState, failure_reason


@pytest.fixture
def clock() -> ManualClock:
    """A clock that only moves when a test advances it."""
    return ManualClock()


@pytest.fixture
def breaker(clock: ManualClock) -> CircuitBreaker:
    """A breaker with the production defaults and the manual clock."""
    return CircuitBreaker("rl", clock=clock)


def trip(cb: CircuitBreaker, n: int = 5) -> None:
    for _ in range(n):
        cb.record_failure("timeout")


def fail_probe(cb: CircuitBreaker, clock: ManualClock) -> None:
    clock.advance(cb.get_state()["time_until_retry_sec"])
    assert cb.allow_request()
    cb.record_failure("http_error")


def test_state_codes_and_values() -> None:
    """States carry the gauge codes 0/1/2 and lowercase string values."""
    assert [(s.value, s.code) for s in CircuitState] == [
        ("closed", 0), ("half_open", 1), ("open", 2)]


def test_opens_at_threshold(breaker: CircuitBreaker) -> None:
    """Four failures keep it closed; the fifth opens it."""
    trip(breaker, 4)
    assert breaker.state is CircuitState.CLOSED
    breaker.record_failure("timeout")
    assert breaker.state is CircuitState.OPEN
    assert breaker.get_state()["consecutive_open_count"] == 1


def test_failures_expire_from_window(breaker: CircuitBreaker, clock: ManualClock) -> None:
    """Failures older than window_sec no longer count toward the threshold."""
    trip(breaker, 4)
    clock.advance(60.0)
    assert breaker.get_state()["failure_count"] == 0
    breaker.record_failure("timeout")
    assert breaker.state is CircuitState.CLOSED
    clock.advance(59.0)
    trip(breaker, 3)
    assert breaker.state is CircuitState.CLOSED
    breaker.record_failure("timeout")
    assert breaker.state is CircuitState.OPEN


def test_open_rejects_with_retry_time(breaker: CircuitBreaker, clock: ManualClock) -> None:
    """OPEN rejects at once and says how long until the next probe."""
    trip(breaker)
    clock.advance(10.0)
    with pytest.raises(CircuitBreakerOpenException) as info:
        breaker.before_call()
    assert info.value.name == "rl"
    assert info.value.retry_in_sec == pytest.approx(20.0)
    assert breaker.allow_request() is False
    with pytest.raises(CircuitBreakerOpenException):
        breaker.call(lambda: 1)
    assert breaker.get_state()["total_rejections"] == 3


def test_probe_success_closes_and_resets_timeout(breaker: CircuitBreaker,
                                                 clock: ManualClock) -> None:
    """After the timeout one probe goes through; success closes and resets the timeout."""
    trip(breaker)
    fail_probe(breaker, clock)
    assert breaker.get_state()["current_timeout_sec"] == 60.0
    clock.advance(60.0)
    assert breaker.call(lambda: "ok") == "ok"
    state = breaker.get_state()
    assert state["state"] == "closed"
    assert state["current_timeout_sec"] == 30.0
    assert state["consecutive_open_count"] == 0
    assert state["failure_count"] == 0


def test_timeout_backoff_sequence(breaker: CircuitBreaker, clock: ManualClock) -> None:
    """Failed probes grow the open timeout 30 → 60 → 120 → 240 → 300 → 300."""
    trip(breaker)
    timeouts = [breaker.get_state()["current_timeout_sec"]]
    for _ in range(5):
        clock.advance(timeouts[-1] - 0.001)
        assert not breaker.allow_request()  # not yet
        clock.advance(0.001)
        assert breaker.allow_request()
        assert breaker.state is CircuitState.HALF_OPEN
        breaker.record_failure("timeout")
        timeouts.append(breaker.get_state()["current_timeout_sec"])
    assert timeouts == [30.0, 60.0, 120.0, 240.0, 300.0, 300.0]
    clock.advance(300.0)
    breaker.call(lambda: None)
    assert breaker.get_state()["current_timeout_sec"] == 30.0


def test_half_open_rejects_while_probe_in_flight(breaker: CircuitBreaker,
                                                 clock: ManualClock) -> None:
    """While the probe is out, other callers are rejected."""
    trip(breaker)
    clock.advance(30.0)
    assert breaker.allow_request()
    assert [breaker.allow_request() for _ in range(10)] == [False] * 10
    assert breaker.state is CircuitState.HALF_OPEN


def test_lost_probe_is_replaced_after_a_full_timeout(breaker: CircuitBreaker,
                                                     clock: ManualClock) -> None:
    """A probe that never reports back does not wedge the breaker in HALF_OPEN forever."""
    trip(breaker)
    clock.advance(30.0)
    assert breaker.allow_request()
    clock.advance(29.0)
    assert not breaker.allow_request()
    clock.advance(1.0)
    assert breaker.allow_request()


def test_single_probe_under_50_threads(breaker: CircuitBreaker, clock: ManualClock) -> None:
    """Exactly one of 50 concurrent threads is admitted as the probe."""
    trip(breaker)
    clock.advance(30.0)
    barrier = threading.Barrier(50)
    release = threading.Event()
    ran: list[int] = []
    rejected: list[int] = []

    def probe(i: int) -> None:
        ran.append(i)
        release.wait(5.0)  # keep the probe in flight while the others try

    def worker(i: int) -> None:
        barrier.wait(5.0)
        try:
            breaker.call(probe, i)
        except CircuitBreakerOpenException:
            rejected.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for _ in range(500):  # bounded wait for the 49 rejections
        if len(rejected) == 49:
            break
        threading.Event().wait(0.01)
    release.set()
    for t in threads:
        t.join(5.0)
    assert len(ran) == 1
    assert len(rejected) == 49
    assert breaker.state is CircuitState.CLOSED


async def test_single_probe_under_50_tasks(breaker: CircuitBreaker, clock: ManualClock) -> None:
    """Exactly one of 50 concurrent asyncio tasks is admitted as the probe."""
    trip(breaker)
    clock.advance(30.0)
    release = asyncio.Event()
    ran = 0

    async def probe() -> str:
        nonlocal ran
        ran += 1
        await release.wait()
        return "ok"

    async def worker() -> str:
        try:
            return await breaker.call_async(probe)
        except CircuitBreakerOpenException:
            return "rejected"

    tasks = [asyncio.create_task(worker()) for _ in range(50)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks), 5.0)
    assert ran == 1
    assert results.count("ok") == 1
    assert results.count("rejected") == 49
    assert breaker.state is CircuitState.CLOSED


async def test_call_async_counts_exceptions_and_cancellation(breaker: CircuitBreaker) -> None:
    """call_async records raised errors and cancellations as failures, with reasons (a
    cancelled call is one its caller stopped waiting for: a timeout)."""
    async def boom() -> None:
        raise TimeoutError

    async def hang() -> None:
        await asyncio.Event().wait()

    with pytest.raises(TimeoutError):
        await breaker.call_async(boom)
    task = asyncio.create_task(breaker.call_async(hang))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    state = breaker.get_state()
    assert state["total_failures"] == 2
    assert state["last_failure_reason"] == "timeout"


@pytest.mark.parametrize("deadline", ["timeout", "wait_for"])
async def test_a_deadline_hit_through_asyncio_is_counted_as_a_timeout(
        breaker: CircuitBreaker, deadline: str) -> None:
    """asyncio.timeout / wait_for ending a guarded call count it as `timeout` (it was
    `cancelled`, a reason the troubleshooting table does not know). Deadlines of 0 and 1 ms
    (wait_for never starts a call whose deadline has already passed)."""
    async def hang() -> None:
        await asyncio.Event().wait()

    with pytest.raises(TimeoutError):
        if deadline == "timeout":
            async with asyncio.timeout(0):
                await breaker.call_async(hang)
        else:
            await asyncio.wait_for(breaker.call_async(hang), 0.001)
    state = breaker.get_state()
    assert state["total_failures"] == 1
    assert state["last_failure_reason"] == "timeout"


def test_failure_reason_mapping() -> None:
    """Exceptions map onto bounded reason codes."""
    assert failure_reason(TimeoutError()) == "timeout"
    assert failure_reason(ConnectionRefusedError()) == "connection_error"
    assert failure_reason(ValueError()) == "error"
    assert failure_reason(asyncio.CancelledError()) == "timeout"
    assert failure_reason(KeyboardInterrupt()) == "cancelled"


def test_slow_success_counts_as_failure(clock: ManualClock) -> None:
    """A call slower than call_deadline_sec is a failure even though it returned."""
    cb = CircuitBreaker("rl", call_deadline_sec=0.15, clock=clock)

    def slow() -> int:
        clock.advance(0.2)
        return 7

    assert cb.call(slow) == 7
    cb.record_success(0.1)
    state = cb.get_state()
    assert state["total_failures"] == 1
    assert state["total_successes"] == 1
    assert state["last_failure_reason"] == "slow"
    for _ in range(4):
        cb.record_success(0.5)
    assert cb.state is CircuitState.OPEN


def test_force_open_and_force_close(breaker: CircuitBreaker, clock: ManualClock) -> None:
    """force_open rejects even after the timeout; force_close restores service."""
    breaker.force_open()
    clock.advance(10_000.0)
    assert not breaker.allow_request()
    assert breaker.get_state()["forced_open"] is True
    breaker.force_close()
    assert breaker.allow_request()
    assert breaker.get_state()["state"] == "closed"


def test_disabled_admits_and_never_trips(breaker: CircuitBreaker) -> None:
    """A disabled breaker admits every call and never opens; re-enabling works."""
    trip(breaker)
    breaker.enabled = False
    assert breaker.state is CircuitState.CLOSED
    trip(breaker, 20)
    assert breaker.state is CircuitState.CLOSED
    assert all(breaker.allow_request() for _ in range(5))
    assert breaker.get_state()["enabled"] is False
    breaker.enabled = True
    breaker.record_failure("timeout")
    assert breaker.state is CircuitState.OPEN
    assert CircuitBreaker(enabled=False).allow_request()


def test_reset_restores_fresh_state(breaker: CircuitBreaker, clock: ManualClock) -> None:
    """reset() clears state, timeout, override and counters."""
    trip(breaker)
    fail_probe(breaker, clock)
    breaker.force_open()
    breaker.reset()
    state = breaker.get_state()
    assert state["state"] == "closed"
    assert state["current_timeout_sec"] == 30.0
    assert state["forced_open"] is False
    assert state["total_failures"] == 0


def test_listener_events(breaker: CircuitBreaker, clock: ManualClock) -> None:
    """Listeners see failures, state changes, rejections, successes and fallbacks in order."""
    events: list[CircuitEvent] = []
    breaker.add_listener(events.append)
    trip(breaker)
    breaker.allow_request()
    breaker.record_fallback()
    clock.advance(30.0)
    breaker.call(lambda: None)
    kinds = [(e.kind, e.old_state.value, e.new_state.value) for e in events]
    assert kinds[:4] == [("failure", "closed", "closed")] * 4
    assert kinds[4:] == [
        ("failure", "closed", "closed"),
        ("state_change", "closed", "open"),
        ("rejected", "open", "open"),
        ("fallback", "open", "open"),
        ("state_change", "open", "half_open"),
        ("success", "half_open", "half_open"),
        ("state_change", "half_open", "closed"),
    ]
    assert events[0].reason == "timeout"
    assert events[0].timestamp == pytest.approx(1_000.0)
    assert all(e.name == "rl" for e in events)


def test_listener_exception_is_logged_not_raised(clock: ManualClock,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """A failing listener neither breaks the breaker nor starves the other listeners."""
    seen: list[str] = []

    def bad(event: CircuitEvent) -> None:
        raise RuntimeError("observer bug")

    cb = CircuitBreaker(clock=clock, listeners=[bad, lambda e: seen.append(e.kind)])
    trip(cb)
    assert cb.state is CircuitState.OPEN
    assert "state_change" in seen
    assert "listener" in caplog.text


def test_get_state_fields(breaker: CircuitBreaker, clock: ManualClock) -> None:
    """get_state reports every documented field with consistent values."""
    assert breaker.get_state()["success_rate"] == 1.0
    breaker.call(lambda: None)
    trip(breaker)
    breaker.allow_request()
    breaker.record_fallback()
    clock.advance(12.0)
    state = breaker.get_state()
    expected = {"state", "failure_count", "total_failures", "total_successes", "total_calls",
                "total_rejections", "total_fallbacks", "consecutive_open_count",
                "current_timeout_sec", "time_until_retry_sec", "success_rate",
                "last_failure_reason", "forced_open", "enabled"}
    assert expected <= set(state)
    assert state["state"] == "open"
    assert state["failure_count"] == 5
    assert state["total_calls"] == 1
    assert state["total_rejections"] == 1
    assert state["total_fallbacks"] == 1
    assert state["success_rate"] == pytest.approx(1 / 6)
    assert state["time_until_retry_sec"] == pytest.approx(18.0)
    assert state["last_failure_reason"] == "timeout"


def test_export_restore_round_trip(breaker: CircuitBreaker, clock: ManualClock) -> None:
    """An exported OPEN breaker restores with its timeout and remaining open time."""
    trip(breaker)
    fail_probe(breaker, clock)  # OPEN with 60 s timeout
    clock.advance(20.0)
    data = breaker.export_state()
    other_clock = ManualClock(start=5.0)
    other = CircuitBreaker("rl", clock=other_clock)
    other.restore_state(data)
    state = other.get_state()
    assert state["state"] == "open"
    assert state["current_timeout_sec"] == 60.0
    assert state["time_until_retry_sec"] == pytest.approx(40.0)
    assert state["total_failures"] == 6
    other_clock.advance(40.0)
    assert other.allow_request()
    assert not other.allow_request()


def test_restore_half_open_is_due_for_probe(breaker: CircuitBreaker, clock: ManualClock) -> None:
    """A HALF_OPEN export (probe outcome lost) restores OPEN and ready to probe again."""
    trip(breaker)
    clock.advance(30.0)
    assert breaker.allow_request()
    other = CircuitBreaker("rl", clock=ManualClock())
    other.restore_state(breaker.export_state())
    assert other.state is CircuitState.OPEN
    assert other.allow_request()


def test_restore_rejects_bad_data(breaker: CircuitBreaker) -> None:
    """Malformed or out-of-range state raises StateRestoreError."""
    good = breaker.export_state()
    for bad in ({}, {**good, "version": 99}, {**good, "state": "ajar"},
                {**good, "current_timeout_sec": 1e9}, {**good, "window": [[-1.0, True]]},
                {**good, "window": [[1.0, 1]]}, {**good, "version": 1}):
        with pytest.raises(StateRestoreError):
            breaker.restore_state(bad)


def test_constructor_validates() -> None:
    """Nonsense parameters are rejected with the parameter named."""
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ValueError, match="max_timeout_sec"):
        CircuitBreaker(initial_timeout_sec=30.0, max_timeout_sec=10.0)
    with pytest.raises(ValueError, match="window_sec"):
        CircuitBreaker(window_sec=float("nan"))


def test_listener_may_call_back_into_the_breaker(breaker: CircuitBreaker) -> None:
    """A listener that queries or records on the breaker neither deadlocks nor loses events."""
    kinds: list[str] = []

    def listener(event: CircuitEvent) -> None:
        kinds.append(event.kind)
        breaker.get_state()
        if event.kind == "state_change":
            breaker.record_fallback()

    breaker.add_listener(listener)
    trip(breaker)
    assert kinds[-2:] == ["state_change", "fallback"]
    assert breaker.get_state()["total_fallbacks"] == 1


def test_state_events_end_on_real_state_under_threads(clock: ManualClock) -> None:
    """With threads racing, the last delivered state_change matches the breaker's state."""
    cb = CircuitBreaker("rl", failure_threshold=3, initial_timeout_sec=1.0, max_timeout_sec=2.0,
                        clock=clock)
    gauge: list[str] = ["closed"]
    cb.add_listener(lambda e: gauge.append(e.new_state.value) if e.kind == "state_change"
                    else None)

    def worker(seed: int) -> None:
        for i in range(300):
            if cb.allow_request():
                if (i * seed) % 3:
                    cb.record_failure("timeout")
                else:
                    cb.record_success()
            clock.advance(0.01)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10.0)
    assert len(gauge) > 3
    assert gauge[-1] == cb.state.value


def test_enable_metrics_publishes_the_five_metrics_on_the_default_registry() -> None:
    """CircuitBreaker(enable_metrics=True) writes the user's five metrics as it moves."""
    from prometheus_client import REGISTRY

    from himari_l3 import ManualClock

    clock = ManualClock()
    breaker = CircuitBreaker("cb_metrics_test", failure_threshold=2, clock=clock,
                             enable_metrics=True)

    def sample(name: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"breaker": "cb_metrics_test"})

    assert sample("himari_l3_circuit_breaker_state") == 0.0
    breaker.record_failure("timeout")
    breaker.record_failure("http_error")
    breaker.record_fallback()
    assert sample("himari_l3_circuit_breaker_state") == 2.0
    assert sample("himari_l3_circuit_breaker_failures_total") == 2.0
    assert sample("himari_l3_circuit_breaker_fallbacks_total") == 1.0
    assert sample("himari_l3_circuit_breaker_timeout_sec") == 30.0
    assert sample("himari_l3_circuit_breaker_success_rate") == 0.0


def test_reconfigure_keeps_state_and_applies_new_parameters() -> None:
    """reconfigure() changes thresholds and timeouts in place; counters and state stay."""
    from himari_l3 import ManualClock

    clock = ManualClock()
    breaker = CircuitBreaker("reconf", failure_threshold=5, clock=clock)
    breaker.record_failure("timeout")
    breaker.reconfigure(failure_threshold=2, initial_timeout_sec=10.0, max_timeout_sec=40.0,
                        call_deadline_sec=0.5)
    assert breaker.get_state()["current_timeout_sec"] == 10.0  # closed: new initial at once
    assert breaker.call_deadline_sec == 0.5
    breaker.record_failure("timeout")  # 2 failures in the window now trip it
    assert breaker.state.value == "open"
    assert breaker.get_state()["total_failures"] == 2
    breaker.reconfigure(max_timeout_sec=15.0, initial_timeout_sec=5.0)
    assert breaker.get_state()["current_timeout_sec"] == 10.0  # open: kept (within the cap)
    with pytest.raises(ValueError, match="max_timeout_sec"):
        breaker.reconfigure(max_timeout_sec=1.0)


def test_reject_if_open_counts_rejections_and_never_steals_the_probe() -> None:
    """reject_if_open rejects a batch while open, and leaves a due probe to before_call."""
    from himari_l3 import ManualClock

    clock = ManualClock()
    events: list[Any] = []
    breaker = CircuitBreaker("fast", failure_threshold=1, clock=clock, listeners=[events.append])
    assert breaker.reject_if_open(3) is False  # closed: nothing counted
    breaker.record_failure("timeout")
    assert breaker.reject_if_open(4) is True
    assert breaker.get_state()["total_rejections"] == 4
    assert sum(e.count for e in events if e.kind == "rejected") == 4  # one event, count 4
    clock.advance(30.0)
    assert breaker.reject_if_open(4) is False  # the probe is due: callers admit it
    breaker.before_call()
    assert breaker.state.value == "half_open"
    assert breaker.reject_if_open(2) is True  # probe in flight
    assert breaker.get_state()["total_rejections"] == 6
