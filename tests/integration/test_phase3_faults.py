"""Phase 3 against a real HTTP server on 127.0.0.1 with injected faults: the breaker opens,
rejects, probes once, closes or re-opens with a doubled timeout (on a manual clock, never
sleeping through it); every decision is a valid allocation; counters and metrics agree —
whether the client asks one batch request per decision or one request per signal."""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import fault_server, make_cascade, make_metrics_observer, make_signal
from himari_l3 import EnsembleAllocation, ManualClock, TacticalSignal
from himari_l3.phase3 import Layer3Phase3Hybrid
from himari_l3.rl.server import BackgroundRLServer, FaultInjector

pytestmark = pytest.mark.integration

BTC, ETH = "BTC-USD", "ETH-USD"
PRICES = {BTC: 50_000.0, ETH: 3_000.0}
DEADLINE = 0.5
GENEROUS = 10.0  # seconds: for tests of equivalence, not of the deadline
HANG = 3.0


def signals() -> list[TacticalSignal]:
    return [make_signal(strategy_id="momentum", symbol=BTC, confidence=0.7),
            make_signal(strategy_id="meanrev", symbol=ETH, confidence=0.6)]


CASCADES = {BTC: make_cascade(), ETH: make_cascade()}


@pytest.fixture(scope="module", params=[True, False], ids=["batch", "per_signal"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[BackgroundRLServer, FaultInjector]]:
    """The reference RL server with a fault injector, for the whole module: once advertising
    its batch route, once per-signal only (every test holds for both)."""
    with fault_server(HANG, batch=request.param) as started:
        yield started


@pytest.fixture
def fault(server: tuple[BackgroundRLServer, FaultInjector]) -> FaultInjector:
    """The injector, back to "ok" with a zero request count."""
    server[1].reset()
    return server[1]


@pytest.fixture
def clock() -> ManualClock:
    """The clock of the hybrid, its client and its breaker."""
    return ManualClock()


def make_hybrid(url: str, clock: ManualClock, timeout: float = DEADLINE) -> Layer3Phase3Hybrid:
    return Layer3Phase3Hybrid(portfolio_value=100000, enable_rl=True, rl_endpoint=url,
                              rl_timeout_sec=timeout, enable_metrics=True,
                              observer=make_metrics_observer(), clock=clock)


@pytest.fixture
def hybrid(server: tuple[BackgroundRLServer, FaultInjector],
           clock: ManualClock) -> Iterator[Layer3Phase3Hybrid]:
    """Mode 3 against the test server, isolated metrics, manual clock."""
    h = make_hybrid(f"{server[0].url}/predict", clock)
    yield h
    h.stop()


def sample(h: Layer3Phase3Hybrid, name: str, **labels: str) -> float:
    reg = h.observer.metrics.registry  # type: ignore[attr-defined]
    return reg.get_sample_value(name, labels) or 0.0


def decide(h: Layer3Phase3Hybrid) -> EnsembleAllocation:
    """One decision, checked to be a valid allocation."""
    alloc = h.process_signals(signals(), CASCADES, PRICES)
    pv = alloc.portfolio_value
    assert set(alloc.allocations) == {BTC, ETH}
    assert all(math.isfinite(x) and 0.0 <= x <= 0.15 * pv + 1e-6
               for x in alloc.allocations.values())
    assert alloc.total_allocated_usd > 0.0
    return alloc


def reasons(alloc: EnsembleAllocation) -> dict[str, str]:
    return {s: p["reason"] for s, p in alloc.provenance.items()}


def test_http_500_opens_rejects_probes_reopens_doubled_then_closes(
        hybrid: Layer3Phase3Hybrid, fault: FaultInjector, clock: ManualClock) -> None:
    """HTTP 500s open the breaker; open rejects without a request; a failed probe re-opens
    with 60 s; a successful probe closes and resets to 30 s; counters and metrics agree."""
    fault.set("http_500")
    for _ in range(3):  # 2 asks per decision: the 5th failure (3rd decision) opens it
        alloc = decide(hybrid)
        assert reasons(alloc) == {BTC: "http_error", ETH: "http_error"}
    cb = hybrid.circuit_breaker
    assert cb is not None and cb.state.value == "open"
    assert fault.asked == 6
    assert sample(hybrid, "himari_l3_circuit_breaker_state", breaker="rl") == 2
    assert sample(hybrid, "himari_l3_circuit_breaker_failures_total", breaker="rl") == 6

    alloc = decide(hybrid)  # open: rejected at once, no request
    assert reasons(alloc) == {BTC: "circuit_open", ETH: "circuit_open"}
    assert fault.asked == 6

    clock.advance(30.0)  # timeout elapsed: exactly one probe (BTC is asked first)
    alloc = decide(hybrid)
    assert fault.asked == 7
    assert reasons(alloc) == {BTC: "http_error", ETH: "circuit_open"}
    assert cb.state.value == "open"
    assert cb.get_state()["current_timeout_sec"] == 60.0
    assert sample(hybrid, "himari_l3_circuit_breaker_timeout_sec", breaker="rl") == 60.0

    clock.advance(30.0)  # only half of the doubled timeout: still rejecting
    assert reasons(decide(hybrid)) == {BTC: "circuit_open", ETH: "circuit_open"}
    assert fault.asked == 7

    fault.set("ok")
    clock.advance(30.0)
    alloc = decide(hybrid)  # the probe succeeds: closed
    assert fault.asked == 1
    assert alloc.provenance[BTC] == {"path": "rl", "reason": "blended"}
    assert alloc.provenance[ETH] == {"path": "baseline", "reason": "circuit_open"}
    assert cb.state.value == "closed"
    assert cb.get_state()["current_timeout_sec"] == 30.0
    alloc = decide(hybrid)
    assert {p["path"] for p in alloc.provenance.values()} == {"rl"}

    state = hybrid.get_state()
    assert (state["total_decisions"], state["rl_decisions"], state["fallback_decisions"]) == (
        8, 2, 6)
    assert state["fallback_reasons"]["http_error"] == 3 + 1
    assert state["fallback_reasons"]["circuit_open"] == 1 + 1 + 1
    assert state["circuit_breaker"]["total_failures"] == 7
    assert state["circuit_breaker"]["total_fallbacks"] == 6
    assert state["rl_client"]["failures_by_reason"] == {"circuit_open": 6, "http_error": 7}
    assert sample(hybrid, "himari_l3_circuit_breaker_state", breaker="rl") == 0
    assert sample(hybrid, "himari_l3_circuit_breaker_timeout_sec", breaker="rl") == 30.0
    assert sample(hybrid, "himari_l3_circuit_breaker_failures_total", breaker="rl") == 7
    assert sample(hybrid, "himari_l3_circuit_breaker_fallbacks_total", breaker="rl") == 6
    assert sample(hybrid, "himari_l3_decisions_total", path="rl") == 2
    assert sample(hybrid, "himari_l3_decisions_total", path="fallback") == 6
    assert sample(hybrid, "himari_l3_decision_latency_seconds_count", path="fallback") == 6


@pytest.mark.parametrize("use_async", [False, True])
def test_hanging_endpoint_returns_within_deadline(hybrid: Layer3Phase3Hybrid,
                                                  fault: FaultInjector,
                                                  use_async: bool) -> None:
    """A server hanging past the deadline: the decision returns within deadline + 1 s with
    the baseline, reason "timeout", and both calls count as breaker failures."""
    fault.set("hang")
    t0 = time.perf_counter()
    if use_async:
        alloc = asyncio.run(hybrid.process_signals_async(signals(), CASCADES, PRICES))
    else:
        alloc = hybrid.process_signals(signals(), CASCADES, PRICES)
    elapsed = time.perf_counter() - t0
    assert elapsed < DEADLINE + 1.0
    assert reasons(alloc) == {BTC: "timeout", ETH: "timeout"}
    assert hybrid.get_state()["circuit_breaker"]["total_failures"] == 2
    assert sample(hybrid, "himari_l3_circuit_breaker_failures_total", breaker="rl") == 2


def test_connection_refused(clock: ManualClock) -> None:
    """Nothing listening: reason "connection_error", baseline allocation, breaker counts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    h = make_hybrid(f"http://127.0.0.1:{port}/predict", clock)
    try:
        for _ in range(3):  # both asks of a decision are in flight together
            assert reasons(decide(h)) == {BTC: "connection_error", ETH: "connection_error"}
        assert reasons(decide(h)) == {BTC: "circuit_open", ETH: "circuit_open"}
        state = h.get_state()
        assert state["rl_client"]["failures_by_reason"] == {"circuit_open": 2,
                                                            "connection_error": 6}
        assert state["fallback_reasons"] == {"circuit_open": 1, "connection_error": 3}
        assert state["circuit_breaker"]["state"] == "open"
    finally:
        h.stop()


@pytest.mark.parametrize("mode", ["malformed", "out_of_range", "nan"])
def test_bad_payloads_are_invalid_responses(hybrid: Layer3Phase3Hybrid, fault: FaultInjector,
                                            mode: str) -> None:
    """Malformed JSON, out-of-range numbers and NaN literals are failures, not sizes."""
    fault.set(mode)
    alloc = decide(hybrid)
    assert reasons(alloc) == {BTC: "invalid_response", ETH: "invalid_response"}
    assert fault.asked == 2
    assert sample(hybrid, "himari_l3_rl_requests_total", outcome="invalid_response") == 2
    assert sample(hybrid, "himari_l3_circuit_breaker_failures_total", breaker="rl") == 2


def test_slow_answer_counts_as_failure(hybrid: Layer3Phase3Hybrid, fault: FaultInjector,
                                      clock: ManualClock) -> None:
    """An answer arriving after the deadline on the injected clock is "slow": a failure."""
    fault.set("slow")
    fault.on_slow = lambda: clock.advance(DEADLINE + 0.1)
    alloc = decide(hybrid)
    assert reasons(alloc) == {BTC: "slow", ETH: "slow"}
    assert hybrid.get_state()["circuit_breaker"]["last_failure_reason"] == "slow"


def test_healthy_server_blends_every_symbol(hybrid: Layer3Phase3Hybrid, fault: FaultInjector,
                                            request: pytest.FixtureRequest) -> None:
    """With the server OK, each symbol is decided by the RL path: one batch request where the
    server advertises its batch route, else one request per signal."""
    alloc = decide(hybrid)
    assert {p["path"] for p in alloc.provenance.values()} == {"rl"}
    assert fault.asked == 2
    batch = request.node.callspec.params["server"]
    assert (fault.batch_requests, fault.requests) == ((1, 0) if batch else (0, 2))
    assert sample(hybrid, "himari_l3_rl_requests_total", outcome="success") == 2
    assert sample(hybrid, "himari_l3_decisions_total", path="rl") == 1


@pytest.mark.parametrize("mode", ["ok", "http_500"])
def test_baseline_computed_once_even_on_fallback(hybrid: Layer3Phase3Hybrid,
                                                 fault: FaultInjector, mode: str) -> None:
    """Regime hysteresis advances exactly once per decision, on the RL and fallback paths."""
    fault.set(mode)
    states = hybrid.phase2.phase1.regimes.states_
    for i in range(1, 8):  # includes decisions with the breaker open (http_500)
        decide(hybrid)
        assert states[BTC].observations == i and states[ETH].observations == i
    assert hybrid.phase2.batches_total == 7


def test_sync_inside_running_loop_thread_matches_async(
        server: tuple[BackgroundRLServer, FaultInjector], fault: FaultInjector) -> None:
    """process_signals from a coroutine in a thread's running loop equals the async path."""
    url = f"{server[0].url}/predict"
    # What is compared is the two paths, not the deadline: a generous one, so a busy machine
    # cannot make one side fall back (it did at 0.5 s with two busy loops beside the suite).
    a, b = (make_hybrid(url, ManualClock(), timeout=GENEROUS),
            make_hybrid(url, ManualClock(), timeout=GENEROUS))
    out: dict[str, Any] = {}

    async def inside() -> None:
        out["sync"] = [a.process_signals(signals(), CASCADES, PRICES) for _ in range(3)]

    try:
        t = threading.Thread(target=lambda: asyncio.run(inside()))
        t.start()
        t.join(30)
        assert not t.is_alive()

        async def run_async() -> list[EnsembleAllocation]:
            return [await b.process_signals_async(signals(), CASCADES, PRICES)
                    for _ in range(3)]

        asyn = asyncio.run(run_async())
        for x, y in zip(out["sync"], asyn, strict=True):
            assert {p["path"] for p in x.provenance.values()} == {"rl"}, x.provenance
            assert {p["path"] for p in y.provenance.values()} == {"rl"}, y.provenance
            assert x.allocations == y.allocations
            assert x.provenance == y.provenance
        for h in (a, b):
            assert sample(h, "himari_l3_decisions_total", path="rl") == 3
    finally:
        a.stop()
        b.stop()
