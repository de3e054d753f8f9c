"""The three Phase 3 deployment modes of the user's document, constructed exactly as written
(mode 3 against the reference RL server on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator

import pytest

from conftest import make_cascade, make_signal
from himari_l3 import EnsembleAllocation, TacticalSignal
from himari_l3.phase3 import Layer3Phase3Hybrid
from himari_l3.rl import MockTransformerRLClient, RLPolicy, TransformerRLClient
from himari_l3.rl.server import BackgroundRLServer, FaultInjector, create_rl_app

pytestmark = pytest.mark.integration

BTC, ETH, SOL = "BTC-USD", "ETH-USD", "SOL-USD"
PRICES = {BTC: 50_000.0, ETH: 3_000.0, SOL: 150.0}


def signals() -> list[TacticalSignal]:
    return [
        make_signal(strategy_id="momentum", symbol=BTC, confidence=0.8, expected_return=0.03,
                    regime="TRENDING_UP"),
        make_signal(strategy_id="breakout", symbol=BTC, confidence=0.6),
        make_signal(strategy_id="mean_reversion", symbol=ETH, confidence=0.7),
        make_signal(strategy_id="carry", symbol=SOL, action="SELL"),  # shorts disabled
    ]


def cascades() -> dict[str, object]:
    return {s: make_cascade() for s in PRICES}


def assert_valid(alloc: EnsembleAllocation) -> None:
    pv = alloc.portfolio_value
    assert set(alloc.allocations) == {BTC, ETH, SOL}
    assert all(math.isfinite(x) and 0.0 <= x <= 0.15 * pv + 1e-6
               for x in alloc.allocations.values())
    assert alloc.total_allocated_usd <= 0.80 * pv + 1e-6
    assert alloc.allocations[SOL] == 0.0


@pytest.fixture(scope="module")
def reference_server() -> Iterator[tuple[BackgroundRLServer, FaultInjector]]:
    """The reference RL model (default policy) on a free loopback port."""
    fault = FaultInjector()
    srv = BackgroundRLServer(create_rl_app(RLPolicy.default(), fault)).start()
    yield srv, fault
    srv.stop()


def test_mode1_fallback_only() -> None:
    """Mode 1 as written: RL off, every symbol decided by the baseline."""
    hybrid = Layer3Phase3Hybrid(
        portfolio_value=100000,
        enable_rl=False,  # Phase 2 baseline only
        enable_metrics=True,
    )
    alloc = hybrid.process_signals(signals(), cascades(), PRICES)
    assert_valid(alloc)
    assert alloc.allocations[BTC] > 0 and alloc.allocations[ETH] > 0
    assert {p["path"] for p in alloc.provenance.values()} == {"baseline"}
    state = hybrid.get_state()
    assert state["rl_enabled"] is False
    assert (state["total_decisions"], state["fallback_decisions"]) == (1, 1)


def test_mode2_mock_rl() -> None:
    """Mode 2 as written: the seeded-or-not mock RL is used and blended."""
    hybrid = Layer3Phase3Hybrid(
        portfolio_value=100000,
        enable_rl=True,
        use_mock_rl=True,  # Simulated predictions
        enable_metrics=True,
    )
    assert isinstance(hybrid.rl_client, MockTransformerRLClient)
    for _ in range(5):
        assert_valid(hybrid.process_signals(signals(), cascades(), PRICES))
    state = hybrid.get_state()
    assert state["total_decisions"] == 5
    assert state["rl_decisions"] + state["fallback_decisions"] == 5
    assert state["rl_decisions"] >= 1  # 0.9 success rate: 5 all-fail batches is ~1e-10
    # SOL's SELL (shorts disabled) is never asked: 3 asks per batch
    assert state["rl_client"]["total_predictions"] == 15
    hybrid.stop()


def test_mode3_real_rl_against_reference_server(
        reference_server: tuple[BackgroundRLServer, FaultInjector]) -> None:
    """Mode 3 as written, against the reference server: predictions over real HTTP are
    blended, one batch request per decision (the server advertises its batch route), sync
    and async alike."""
    srv, fault = reference_server
    fault.set("ok")
    hybrid = Layer3Phase3Hybrid(
        portfolio_value=100000,
        enable_rl=True,
        rl_endpoint=f"http://127.0.0.1:{srv.port}/predict",
        rl_timeout_sec=5.0,
        enable_metrics=True,
    )
    try:
        assert isinstance(hybrid.rl_client, TransformerRLClient)
        a = hybrid.process_signals(signals(), cascades(), PRICES)
        b = asyncio.run(hybrid.process_signals_async(signals(), cascades(), PRICES))
        for alloc in (a, b):
            assert_valid(alloc)
            assert alloc.provenance[BTC] == {"path": "rl", "reason": "blended"}
            assert alloc.provenance[ETH] == {"path": "rl", "reason": "blended"}
            assert alloc.provenance[SOL] == {"path": "baseline", "reason": "limits_forbid"}
            versions = {x["model_version"] for x in alloc.trace["rl"]["blends"]}
            assert versions == {RLPolicy.default().model_version}
        assert fault.asked == 2 * 3  # no ask for SOL's forbidden SELL
        assert (fault.batch_requests, fault.requests) == (2, 0)  # one request per decision
        state = hybrid.get_state()
        assert (state["total_decisions"], state["rl_decisions"]) == (2, 2)
        assert state["rl_client"]["successful_predictions"] == 6
        assert state["circuit_breaker"]["state"] == "closed"
    finally:
        hybrid.stop()
