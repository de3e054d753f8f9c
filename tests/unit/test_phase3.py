"""Unit tests of the Phase 3 hybrid orchestrator with hand-written fake RL clients (SPEC §5)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from conftest import make_cascade, make_metrics_observer, make_signal, mutable_ids
from fakes import FakeRL, prediction
from himari_l3 import CascadeIndicators, EnsembleAllocation, ManualClock, RLPrediction
from himari_l3.config.schema import Layer3Config, RLConfig
from himari_l3.contracts import TacticalSignal
from himari_l3.observability.prometheus import PrometheusObserver
from himari_l3.phase2 import Layer3Phase2Portfolio
from himari_l3.phase3 import Layer3Phase3Hybrid
from himari_l3.rl import RLFailure, TransformerRLClient

PV = 100_000.0
BTC, ETH, SOL, ADA = "BTC-USD", "ETH-USD", "SOL-USD", "ADA-USD"
PRICES = {BTC: 50_000.0, ETH: 3_000.0, SOL: 150.0, ADA: 0.5}
EXIT = CascadeIndicators(funding_rate=0.01, oi_change_pct=-0.5, volume_ratio=10.0,
                         onchain_whale_pressure=1.0, exchange_netflow_zscore=10.0)

Answer = Callable[[TacticalSignal], RLPrediction | RLFailure]


def hybrid(rl: Any = None, **kw: Any) -> Layer3Phase3Hybrid:
    """A hybrid with an isolated metrics registry and a manual clock."""
    kw.setdefault("observer", make_metrics_observer())
    kw.setdefault("clock", ManualClock())
    kw.setdefault("portfolio_value", PV)
    kw.setdefault("enable_metrics", True)
    if rl is not None:
        kw["rl_client"] = rl
    return Layer3Phase3Hybrid(**kw)


def signals() -> list[TacticalSignal]:
    return [
        make_signal(strategy_id="momentum", symbol=BTC, confidence=0.6, expected_return=0.02),
        make_signal(strategy_id="breakout", symbol=BTC, confidence=0.5, expected_return=0.01),
        make_signal(strategy_id="meanrev", symbol=ETH, confidence=0.6),
    ]


def calm() -> dict[str, CascadeIndicators]:
    return {s: make_cascade() for s in PRICES}


def registry(h: Layer3Phase3Hybrid) -> Any:
    assert isinstance(h.observer, PrometheusObserver)
    return h.observer.metrics.registry


def check_invariants(alloc: EnsembleAllocation, pos: float = 0.15, strat: float = 0.40,
                     port: float = 0.80) -> None:
    """Every Phase 2 budget holds and everything is finite."""
    tol = 1e-9 * alloc.portfolio_value
    pv = alloc.portfolio_value
    assert all(math.isfinite(x) and abs(x) <= pos * pv + tol for x in alloc.allocations.values())
    for row in alloc.breakdown.values():
        assert sum(abs(x) for x in row.values()) <= strat * pv + tol
    assert sum(abs(x) for x in alloc.allocations.values()) <= port * pv + tol


# ------------------------------------------------------------------------ modes
def test_disabled_mode_equals_phase2() -> None:
    """With RL disabled the hybrid returns exactly Phase 2's allocation, provenance says so."""
    h = hybrid(enable_rl=False)
    p2 = Layer3Phase2Portfolio(PV, enable_metrics=False, clock=ManualClock())
    a = h.process_signals(signals(), calm(), PRICES)
    b = p2.process_multi_strategy_signals(signals(), calm(), PRICES)
    assert a.allocations == b.allocations
    assert a.breakdown == b.breakdown
    assert {p["reason"] for p in a.provenance.values()} == {"rl_disabled"}
    state = h.get_state()
    assert (state["total_decisions"], state["rl_decisions"], state["fallback_decisions"]) == (
        1, 0, 1)
    assert state["fallback_reasons"] == {"rl_disabled": 1}
    assert state["rl_client"] is None and state["circuit_breaker"] is None


def test_blend_is_confidence_weighted_and_bounded() -> None:
    """blended = (1-w)·baseline + w·pct·PV per signal with w = min(max_rl_weight, conf)."""
    fake = FakeRL(lambda s: prediction(0.04, 0.9))
    h = hybrid(fake, max_rl_weight=0.3)
    base = hybrid(enable_rl=False).process_signals(signals(), calm(), PRICES)
    alloc = h.process_signals(signals(), calm(), PRICES)
    blends = alloc.trace["rl"]["blends"]
    assert len(blends) == 3
    for b in blends:
        assert b["weight"] == pytest.approx(0.3)
        assert b["rl_target_usd"] == pytest.approx(0.04 * PV)  # calm cascade: multiplier 1
        assert b["blended_usd"] == pytest.approx(0.7 * b["baseline_usd"] + 0.3 * 0.04 * PV)
    assert alloc.allocations[ETH] == pytest.approx(
        0.7 * base.allocations[ETH] + 0.3 * 0.04 * PV)
    assert alloc.provenance == {BTC: {"path": "rl", "reason": "blended"},
                                ETH: {"path": "rl", "reason": "blended"}}
    assert alloc.trace["rl"]["baseline_allocations"] == pytest.approx(base.allocations)


def test_low_confidence_prediction_weighs_little() -> None:
    """The blend weight is the prediction's confidence when below max_rl_weight."""
    h = hybrid(FakeRL(lambda s: prediction(0.1, 0.05)), max_rl_weight=0.5)
    alloc = h.process_signals(signals(), calm(), PRICES)
    assert [b["weight"] for b in alloc.trace["rl"]["blends"]] == pytest.approx([0.05] * 3)


# ------------------------------------------------------------------ limits after RL
def test_rl_cannot_exceed_any_budget() -> None:
    """An RL answer of +100 % at full weight is capped by every Phase 2 budget again."""
    h = hybrid(FakeRL(lambda s: prediction(1.0, 1.0)), max_rl_weight=1.0)
    alloc = h.process_signals(signals(), calm(), PRICES)
    check_invariants(alloc)
    assert alloc.allocations[BTC] == pytest.approx(0.15 * PV, rel=1e-9)
    assert alloc.binding_limits[BTC] != "none"


def test_rl_cannot_reopen_a_cascade_exit() -> None:
    """RL is not asked about an EXIT symbol and its allocation stays 0."""
    fake = FakeRL(lambda s: prediction(1.0, 1.0))
    h = hybrid(fake, max_rl_weight=1.0)
    alloc = h.process_signals(signals(), {BTC: EXIT, ETH: make_cascade()}, PRICES)
    assert alloc.allocations[BTC] == 0.0
    assert alloc.provenance[BTC] == {"path": "baseline", "reason": "cascade_exit"}
    assert fake.calls == [[("meanrev", ETH)]]


def test_rl_cannot_short_when_shorting_disabled() -> None:
    """An RL answer of -100 % on a BUY symbol cannot make it short (shorts disabled)."""
    h = hybrid(FakeRL(lambda s: prediction(-1.0, 1.0)), max_rl_weight=1.0)
    alloc = h.process_signals(signals(), calm(), PRICES)
    assert all(x >= 0.0 for x in alloc.allocations.values())
    assert all(x >= 0.0 for row in alloc.breakdown.values() for x in row.values())


def test_rl_cannot_turn_a_sell_into_a_long() -> None:
    """A strategy that says SELL (shorts disabled: target 0) stays at 0 whatever the RL says,
    even when another strategy's BUY leaves room on the symbol."""
    sigs = [make_signal(strategy_id="buyer", symbol=BTC, confidence=0.3,
                        expected_return=0.005),
            make_signal(strategy_id="seller", symbol=BTC, action="SELL")]
    base = hybrid(enable_rl=False).process_signals(sigs, calm(), PRICES)
    h = hybrid(FakeRL(lambda s: prediction(1.0, 1.0)), max_rl_weight=1.0)
    alloc = h.process_signals(sigs, calm(), PRICES)
    assert alloc.breakdown.get("seller", {}).get(BTC, 0.0) == 0.0
    assert base.breakdown.get("seller", {}).get(BTC, 0.0) == 0.0


def test_rl_cannot_turn_a_buy_into_a_short() -> None:
    """With shorting allowed, a BUY strategy's contribution stays >= 0 under any RL answer."""
    sigs = [make_signal(strategy_id="buyer", symbol=BTC, confidence=0.4),
            make_signal(strategy_id="seller", symbol=BTC, action="SELL", confidence=0.9,
                        expected_return=0.05)]
    h = hybrid(FakeRL(lambda s: prediction(-1.0 if s.action.direction > 0 else 1.0, 1.0)),
               max_rl_weight=1.0, allow_short=True)
    alloc = h.process_signals(sigs, calm(), PRICES)
    assert alloc.breakdown["buyer"][BTC] >= 0.0
    assert alloc.breakdown.get("seller", {}).get(BTC, 0.0) <= 0.0
    check_invariants(alloc)


def test_rl_cannot_grow_a_hold() -> None:
    """A HOLD keeps at most the strategy's current position, whatever the RL says."""
    h = hybrid(FakeRL(lambda s: prediction(1.0, 1.0)), max_rl_weight=1.0)
    first = h.process_signals([make_signal(strategy_id="m", symbol=ETH, confidence=0.3),
                               make_signal(strategy_id="b", symbol=ETH)], calm(), PRICES)
    held = first.breakdown["m"][ETH]
    hold = make_signal(strategy_id="m", symbol=ETH, action="HOLD", timestamp_ns=2)
    buy = make_signal(strategy_id="b", symbol=ETH, timestamp_ns=2)
    alloc = h.process_signals([hold, buy], calm(), PRICES)
    assert 0.0 <= alloc.breakdown["m"][ETH] <= held + 1e-9


# ------------------------------------------------------------- calls and provenance
def test_no_wasted_calls_and_provenance_per_symbol() -> None:
    """RL is asked once per decision, only about signals the limits leave room for; each
    symbol's provenance names its path and fallback reason."""
    def answer(s: TacticalSignal) -> RLPrediction | RLFailure:
        if s.symbol == ADA:
            return RLFailure(s.symbol, s.strategy_id, "timeout", "fake")
        return prediction()

    fake = FakeRL(answer)
    h = hybrid(fake)
    sigs = [*signals(),
            make_signal(strategy_id="x", symbol=SOL, action="SELL"),   # short disabled
            make_signal(strategy_id="y", symbol=ADA)]
    cascades = {**calm(), ETH: EXIT}
    alloc = h.process_signals(sigs, cascades, PRICES)
    assert fake.calls == [[("y", ADA), ("breakout", BTC), ("momentum", BTC)]]
    assert alloc.provenance == {
        BTC: {"path": "rl", "reason": "blended"},
        ETH: {"path": "baseline", "reason": "cascade_exit"},
        SOL: {"path": "baseline", "reason": "limits_forbid"},
        ADA: {"path": "baseline", "reason": "timeout"},
    }
    reg = registry(h)
    assert reg.get_sample_value("himari_l3_rl_symbol_fallbacks_total",
                                {"reason": "timeout"}) == 1.0
    assert reg.get_sample_value("himari_l3_decisions_total", {"path": "rl"}) == 1.0


def test_all_failures_fall_back_to_baseline_and_count() -> None:
    """Every prediction failing gives the baseline allocation and one fallback decision."""
    fake = FakeRL(lambda s: RLFailure(s.symbol, s.strategy_id, "invalid_response", "NaN"))
    h = hybrid(fake)
    base = hybrid(enable_rl=False).process_signals(signals(), calm(), PRICES)
    alloc = h.process_signals(signals(), calm(), PRICES)
    assert alloc.allocations == base.allocations
    assert {p["reason"] for p in alloc.provenance.values()} == {"invalid_response"}
    state = h.get_state()
    assert (state["rl_decisions"], state["fallback_decisions"]) == (0, 1)
    assert state["circuit_breaker"]["total_fallbacks"] == 1
    reg = registry(h)
    assert reg.get_sample_value("himari_l3_decisions_total", {"path": "fallback"}) == 1.0
    assert reg.get_sample_value("himari_l3_circuit_breaker_fallbacks_total",
                                {"breaker": "rl"}) == 1.0


def test_http_nan_answer_is_a_failure_not_a_nan_size() -> None:
    """A NaN literal from the HTTP endpoint is rejected by validation: baseline, no NaN."""
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b'{"position_pct": NaN, "confidence": Infinity, '
                                           b'"predicted_return": 0, "predicted_volatility": '
                                           b'0.02, "model_version": "m"}')

    client = TransformerRLClient("http://rl.test/predict", timeout_sec=2.0,
                                 transport=httpx.MockTransport(handler))
    h = hybrid(client, rl_timeout_sec=2.0)
    try:
        alloc = h.process_signals(signals(), calm(), PRICES)
    finally:
        h.stop()
    assert all(math.isfinite(x) for x in alloc.allocations.values())
    assert {p["reason"] for p in alloc.provenance.values()} == {"invalid_response"}
    assert client.get_state()["failures_by_reason"] == {"invalid_response": 3}


# ------------------------------------------------------------ baseline computed once
@pytest.mark.parametrize("mode", ["disabled", "ok", "failing", "open"])
async def test_baseline_computed_once_per_call(mode: str) -> None:
    """Regime hysteresis and Phase 1 sizing advance exactly once per call, sync or async,
    on every path including fallback."""
    if mode == "disabled":
        h = hybrid(enable_rl=False)
    else:
        fake = FakeRL((lambda s: prediction()) if mode == "ok" else
                      (lambda s: RLFailure(s.symbol, s.strategy_id, "http_error")))
        if mode == "open":
            fake.circuit_breaker.force_open()
        h = hybrid(fake)
    regimes = h.phase2.phase1.regimes
    for i in range(1, 4):
        h.process_signals(signals(), calm(), PRICES)
        await h.process_signals_async(signals(), calm(), PRICES)
        assert regimes.states_[BTC].observations == 2 * i
        assert regimes.states_[ETH].observations == 2 * i
        assert h.phase2.phase1.decisions_total == 2 * i * 3
        assert h.phase2.batches_total == 2 * i


# ------------------------------------------------------------------- empty batches
async def test_empty_signal_list(caplog: pytest.LogCaptureFixture) -> None:
    """Empty input: empty allocation, a warning, one fallback counted (sync and async)."""
    h = hybrid(use_mock_rl=True, enable_rl=True)
    with caplog.at_level(logging.WARNING, logger="himari_l3.phase3"):
        a = h.process_signals([], calm(), PRICES)
        b = await h.process_signals_async([], calm(), PRICES)
    assert a.allocations == b.allocations == {}
    assert a.total_allocated_usd == 0.0
    assert sum("empty" in r.getMessage() for r in caplog.records) == 2
    state = h.get_state()
    assert (state["total_decisions"], state["fallback_decisions"]) == (2, 2)
    assert state["circuit_breaker"]["total_fallbacks"] == 2
    assert state["rl_client"]["total_predictions"] == 0
    assert registry(h).get_sample_value("himari_l3_decisions_total",
                                        {"path": "fallback"}) == 2.0


# ------------------------------------------------------------------- sync and async
def mock_hybrid(seed: int = 5) -> Layer3Phase3Hybrid:
    cfg = Layer3Config(rl=RLConfig(enabled=True, use_mock=True, mock_seed=seed,
                                   mock_success_rate=0.7, timeout_sec=1.0))
    return hybrid(config=cfg)


def batches() -> list[list[TacticalSignal]]:
    out = []
    for t in range(6):
        out.append([make_signal(strategy_id=f"s{j}", symbol=sym, timestamp_ns=t,
                                confidence=0.3 + 0.1 * j, regime="TRENDING_UP")
                    for j, sym in enumerate([BTC, ETH, SOL, BTC, ADA])])
    return out


async def test_sync_and_async_give_identical_allocations_and_metrics() -> None:
    """A seeded mock: sync and async twins produce identical allocations; both paths
    record decisions by path and decision latency."""
    s, a = mock_hybrid(), mock_hybrid()
    for batch in batches():
        x = s.process_signals(batch, calm(), PRICES)
        y = await a.process_signals_async(batch, calm(), PRICES)
        assert x.allocations == y.allocations
        assert x.provenance == y.provenance
    assert s.get_state()["rl_decisions"] == a.get_state()["rl_decisions"] > 0
    for h in (s, a):
        reg = registry(h)
        n = sum(reg.get_sample_value("himari_l3_decisions_total", {"path": p}) or 0.0
                for p in ("rl", "fallback"))
        assert n == 6
        lat = sum(reg.get_sample_value("himari_l3_decision_latency_seconds_count",
                                       {"path": p}) or 0.0 for p in ("rl", "fallback"))
        assert lat == 6


def test_sync_path_inside_a_thread_running_an_event_loop() -> None:
    """process_signals called from a coroutine in a thread's running loop works and matches
    the async path of a twin."""
    s, a = mock_hybrid(), mock_hybrid()
    out: dict[str, Any] = {}

    async def inside() -> None:
        out["sync"] = [s.process_signals(b, calm(), PRICES).allocations for b in batches()]

    t = threading.Thread(target=lambda: asyncio.run(inside()))
    t.start()
    t.join(30)
    assert not t.is_alive()

    async def twin() -> list[dict[str, float]]:
        return [(await a.process_signals_async(b, calm(), PRICES)).allocations
                for b in batches()]

    assert out["sync"] == asyncio.run(twin())


# -------------------------------------------------------------- outcomes and state
def test_performance_comparison() -> None:
    """record_outcome feeds per-path trades, means and Sharpe; rl_advantage is the mean gap."""
    h = hybrid(enable_rl=False)
    h.process_signals(signals(), calm(), PRICES)
    assert h.get_performance_comparison()["rl_advantage"] is None
    for r in (0.01, 0.03):
        h.record_outcome(BTC, r, used_rl=True)
    for r in (0.00, 0.02, -0.01):
        h.record_outcome(BTC, r, used_rl=False)
    perf = h.get_performance_comparison()
    assert perf["rl"]["trades"] == 2 and perf["baseline"]["trades"] == 3
    assert perf["rl"]["mean"] == pytest.approx(0.02)
    assert perf["baseline"]["mean"] == pytest.approx(1 / 300)
    assert perf["rl_advantage"] == pytest.approx(0.02 - 1 / 300)
    assert perf["rl"]["sharpe"] == pytest.approx(0.02 / math.sqrt(0.0002))
    assert registry(h).get_sample_value("himari_l3_rl_advantage") == pytest.approx(
        0.02 - 1 / 300)


def test_get_state_is_json_and_complete() -> None:
    """get_state reports counters, client, breaker, performance and Phase 2, as JSON."""
    h = hybrid(FakeRL(lambda s: prediction()))
    h.process_signals(signals(), calm(), PRICES)
    state = json.loads(json.dumps(h.get_state()))
    assert {"total_decisions", "rl_decisions", "fallback_decisions", "rl_usage_rate",
            "fallback_reasons", "rl_enabled", "rl_client", "circuit_breaker", "performance",
            "phase2"} <= set(state)
    assert state["rl_usage_rate"] == 1.0
    assert state["circuit_breaker"]["state"] == "closed"


def _busy_hybrid() -> Layer3Phase3Hybrid:
    """A hybrid with every kind of learned state: allocations with RL answers and failures,
    both outcome kinds, correlation rows, regime changes."""
    answers = iter(range(10**6))

    def answer(s: TacticalSignal) -> RLPrediction | RLFailure:
        k = next(answers)
        if k % 3 == 0:
            return RLFailure(s.symbol, s.strategy_id, "timeout", "scripted")
        return prediction(0.05, 0.6)

    h = hybrid(FakeRL(answer))
    for i in range(6):
        sigs = [make_signal(strategy_id=f"s{j}", symbol=(BTC, ETH, SOL)[j % 3],
                            confidence=0.5 + 0.05 * i) for j in range(4)]
        h.process_signals(sigs, make_cascade(), PRICES)
        h.record_outcome(BTC, 0.01 * (i - 2), used_rl=i % 2 == 0)
        h.phase2.phase1.update_from_trade_result("s1", ETH, 0.02 * (i - 3))
        h.phase2.update_correlations({BTC: 0.01 * i, ETH: -0.005 * i}, 1_700_000_000 + i)
    return h


def test_exported_state_shares_no_mutable_container_with_the_engine() -> None:
    """export_state returns fresh containers only: a snapshot is encoded while requests go
    on, so a shared dict (the fallback-reason counts were one) would put a later state
    under an earlier seq and break exact restore."""
    h = _busy_hybrid()
    state = h.export_state()
    shared = mutable_ids(state, own=False) & mutable_ids(h, own=True)
    assert not shared


def test_an_export_does_not_change_when_the_engine_moves_on() -> None:
    """The exported state is a consistent copy: more requests leave it as it was."""
    import copy

    h = _busy_hybrid()
    state = h.export_state()
    frozen = copy.deepcopy(state)
    sigs = [make_signal(strategy_id="s0", symbol=BTC), make_signal(strategy_id="s9",
                                                                    symbol=ADA)]
    h.process_signals(sigs, make_cascade(), PRICES)
    h.process_signals(sigs, EXIT, PRICES)  # a fallback: counted by reason
    h.record_outcome(BTC, 0.03, used_rl=False)
    h.phase2.update_correlations({BTC: 0.02, ADA: 0.01}, 1_700_000_100)
    assert state == frozen
