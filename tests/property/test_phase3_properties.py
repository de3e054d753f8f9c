"""Property tests: whatever the RL answers, the blended allocation keeps every Phase 2
invariant, cascade EXIT stays 0 and the direction rules hold."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import cascade_indicators, valid_signals
from fakes import ScriptedModel
from himari_l3 import (
    CascadeIndicators,
    CascadeRecommendation,
    EnsembleAllocation,
    ManualClock,
    RLPrediction,
    TacticalAction,
    TacticalSignal,
)
from himari_l3.config.schema import CascadeConfig
from himari_l3.phase3 import Layer3Phase3Hybrid
from himari_l3.resilience import CircuitBreaker
from himari_l3.rl import FAILURE_REASONS, RLFailure, TransformerRLClient
from himari_l3.sizing.cascade import assess_cascade

SYMBOLS = [f"SYM{i}" for i in range(5)]
PRICES = dict.fromkeys(SYMBOLS, 100.0)
PV = 100_000.0
SETTINGS = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
Answer = RLPrediction | RLFailure


@st.composite
def batches(draw: st.DrawFn) -> list[TacticalSignal]:
    """Up to 10 valid signals, one per strategy x symbol, over 3 strategies and 5 symbols."""
    n = draw(st.integers(1, 10))
    out = [draw(valid_signals(strategy_id=draw(st.sampled_from(["a", "b", "c"]))))
           for _ in range(n)]
    seen: dict[tuple[str, str], TacticalSignal] = {}
    for s in out:
        seen.setdefault((s.strategy_id, s.symbol), s)
    return list(seen.values())


valid_answers = st.one_of(
    st.builds(RLPrediction, st.floats(-1.0, 1.0), st.floats(0.0, 1.0), st.floats(-1.0, 1.0),
              st.floats(0.0, 5.0), st.just("prop"), st.floats(0.0, 1e3), st.just(1)),
    st.builds(RLFailure, st.just("S"), st.just("s"), st.sampled_from(sorted(FAILURE_REASONS))),
)
limits = st.fixed_dictionaries({
    "max_position_pct": st.floats(0.01, 1.0),
    "max_strategy_pct": st.floats(0.01, 1.0),
    "max_portfolio_pct": st.floats(0.01, 1.0),
})
cascade_maps = st.fixed_dictionaries({s: cascade_indicators() for s in SYMBOLS})


def scripted(allow_short: bool, weight: float, lim: dict[str, float]) -> tuple[
        ScriptedModel, Layer3Phase3Hybrid]:
    """A hybrid whose model answers from a script (breaker disabled: answers only)."""
    fake = ScriptedModel()
    h = Layer3Phase3Hybrid(PV, rl_model=fake, enable_metrics=False, max_rl_weight=weight,
                           allow_short=allow_short, clock=ManualClock(),
                           circuit_breaker=CircuitBreaker("rl", enabled=False,
                                                          clock=ManualClock()), **lim)
    return fake, h


def check(alloc: EnsembleAllocation, sigs: list[TacticalSignal], lim: dict[str, float],
          allow_short: bool, exits: set[str],
          previous: dict[str, dict[str, float]]) -> None:
    """Phase 2 invariants, EXIT, and the direction rules per symbol and per signal."""
    tol = 1e-9 * PV
    for sym, usd in alloc.allocations.items():
        assert math.isfinite(usd)
        assert abs(usd) <= lim["max_position_pct"] * PV + tol
        if sym in exits:
            assert usd == 0.0
        if not allow_short:
            assert usd >= 0.0
    for row in alloc.breakdown.values():
        assert all(math.isfinite(x) for x in row.values())
        assert sum(abs(x) for x in row.values()) <= lim["max_strategy_pct"] * PV + tol
    assert sum(abs(x) for x in alloc.allocations.values()) <= lim["max_portfolio_pct"] * PV + tol
    if alloc.strategy_weights:
        assert math.isclose(sum(alloc.strategy_weights.values()), 1.0, rel_tol=1e-9)
    for s in sigs:
        c = alloc.breakdown.get(s.strategy_id, {}).get(s.symbol, 0.0)
        d = s.action.direction
        if d > 0:
            assert c >= 0.0
        elif d < 0:
            assert c <= 0.0 and (allow_short or c == 0.0)
        else:
            held = previous.get(s.strategy_id, {}).get(s.symbol, 0.0)
            assert abs(c) <= abs(held) + 1e-6 and c * held >= 0.0


EXIT = CascadeIndicators(funding_rate=0.01, oi_change_pct=-0.5, volume_ratio=10.0,
                         onchain_whale_pressure=1.0, exchange_netflow_zscore=10.0)


@SETTINGS
@given(first=batches(), second=batches(), data=st.data(), lim=limits,
       cascades=cascade_maps, allow_short=st.booleans(), weight=st.floats(0.0, 1.0),
       use_async=st.booleans())
def test_any_rl_answer_keeps_every_limit(first: list[TacticalSignal],
                                        second: list[TacticalSignal], data: st.DataObject,
                                        lim: dict[str, float],
                                        cascades: dict[str, CascadeIndicators],
                                        allow_short: bool, weight: float,
                                        use_async: bool) -> None:
    """Two batches with arbitrary RL answers: invariants, EXIT = 0 and direction rules hold."""
    fake, h = scripted(allow_short, weight, lim)
    previous: dict[str, dict[str, float]] = {}
    for sigs in (first, second):
        fake.script = {(s.strategy_id, s.symbol): data.draw(valid_answers) for s in sigs}
        exit_syms = set(data.draw(st.lists(st.sampled_from(SYMBOLS), max_size=2)))
        cas = {s: (EXIT if s in exit_syms else c) for s, c in cascades.items()}
        exits = {s for s in SYMBOLS if cas[s] is EXIT}
        if use_async:
            alloc = asyncio.run(h.process_signals_async(sigs, cas, PRICES))
        else:
            alloc = h.process_signals(sigs, cas, PRICES)
        check(alloc, sigs, lim, allow_short, exits, previous)
        previous = alloc.breakdown


# ------------------------------------- any numbers, including non-finite, over HTTP JSON
any_number = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                       st.integers(-10**30, 10**30), st.just("0.1"), st.none(),
                       st.booleans())


@st.composite
def raw_bodies(draw: st.DrawFn) -> bytes:
    """A JSON body: all fields in range, one field replaced by any number (NaN/Infinity
    literals, huge ints, strings, booleans, null), or every field arbitrary."""
    body: dict[str, Any] = {
        "position_pct": draw(st.floats(-1.0, 1.0)), "confidence": draw(st.floats(0.0, 1.0)),
        "predicted_return": draw(st.floats(-1.0, 1.0)),
        "predicted_volatility": draw(st.floats(0.0, 5.0)), "model_version": "prop"}
    keys = ["position_pct", "confidence", "predicted_return", "predicted_volatility"]
    kind = draw(st.sampled_from(["valid", "one_bad", "any"]))
    for k in keys if kind == "any" else [draw(st.sampled_from(keys))] if kind == "one_bad" else []:
        body[k] = draw(any_number)
    return json.dumps(body).encode()


class HttpScript:
    """A MockTransport handler answering each request from a script keyed by the signal."""

    def __init__(self) -> None:
        self.script: dict[tuple[str, str], bytes] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        req = json.loads(request.content)
        body = self.script.get((req["strategy_id"], req["symbol"]), b"{}")
        return httpx.Response(200, content=body)


@pytest.fixture(scope="module")
def http_rl() -> Iterator[tuple[TransformerRLClient, HttpScript]]:
    """One real HTTP client (module-wide) whose transport answers from a script."""
    handler = HttpScript()
    client = TransformerRLClient("http://rl.test/predict", timeout_sec=5.0,
                                 circuit_breaker=CircuitBreaker("rl", enabled=False),
                                 transport=httpx.MockTransport(handler))
    yield client, handler
    client.close()


@SETTINGS
@given(sigs=batches(), data=st.data(), cascades=cascade_maps, allow_short=st.booleans())
def test_any_http_numbers_keep_every_limit(http_rl: tuple[TransformerRLClient, HttpScript],
                                           sigs: list[TacticalSignal], data: st.DataObject,
                                           cascades: dict[str, CascadeIndicators],
                                           allow_short: bool) -> None:
    """Arbitrary numbers (NaN, inf, huge, strings) in HTTP answers go through the client's
    validation: finite, capped allocations and invalid answers become fallbacks."""
    client, handler = http_rl
    handler.script = {(s.strategy_id, s.symbol): data.draw(raw_bodies()) for s in sigs}
    h = Layer3Phase3Hybrid(PV, rl_client=client, enable_metrics=False, max_rl_weight=1.0,
                           rl_timeout_sec=5.0, allow_short=allow_short, clock=ManualClock())
    alloc = h.process_signals(sigs, cascades, PRICES)
    exits = {s for s, c in cascades.items()
             if assess_cascade(CascadeConfig(), c).recommendation is CascadeRecommendation.EXIT}
    check(alloc, sigs, {"max_position_pct": 0.15, "max_strategy_pct": 0.40,
                        "max_portfolio_pct": 0.80}, allow_short, exits, {})
    for prov in alloc.provenance.values():
        if prov["path"] == "baseline":
            assert prov["reason"] in {"invalid_response", "cascade_exit", "limits_forbid",
                                      "no_prediction"} or "+" in prov["reason"]
    asked = {(b["strategy_id"], b["symbol"]) for b in alloc.trace["rl"]["blends"]}
    for key in asked:
        parsed = json.loads(handler.script[key])
        assert all(isinstance(parsed[k], float | int) and math.isfinite(parsed[k])
                   for k in ("position_pct", "confidence"))


def test_exit_symbol_is_never_asked_or_moved() -> None:
    """Sanity example: a STRONG_BUY under EXIT, RL answering +100 %, stays 0 and unasked."""
    sig = TacticalSignal("a", "SYM0", TacticalAction.STRONG_BUY, 1.0, 0.0, "TRENDING_UP", 1,
                         0.05, 0.02)
    fake, h = scripted(False, 1.0, {})
    fake.script = {("a", "SYM0"): RLPrediction(1.0, 1.0, 0.1, 0.02, "p", 1.0, 1)}
    alloc = h.process_signals([sig], EXIT, PRICES)
    assert alloc.allocations == {"SYM0": 0.0}
    assert alloc.trace["rl"]["asked"] == 0
