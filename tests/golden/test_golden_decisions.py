"""Golden outputs: the seeded benchmark workloads give exactly the recorded decisions.

A refactor must not change a single number. Each workload is sized end to end and its
decisions (every field but wall-clock latencies) are hashed; the digests live in
``golden_digests.json`` next to this file. A change that *means* to change sizes (a new
default, a new stage) regenerates them with ``HIMARI_L3_REGEN_GOLDEN=1 pytest tests/golden``
and says why in its commit message.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from himari_l3 import CascadeIndicators, Layer3Config, ManualClock
from himari_l3.config.schema import RLConfig
from himari_l3.phase1 import Layer3Phase1
from himari_l3.phase2 import Layer3Phase2Portfolio
from himari_l3.phase3 import Layer3Phase3Hybrid

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import bench_phase1  # noqa: E402
import bench_phase2  # noqa: E402

GOLDEN = Path(__file__).with_name("golden_digests.json")
DATA = ROOT.parent / "shared" / "data" / "btc_usdt_1h.csv"
REGEN = os.environ.get("HIMARI_L3_REGEN_GOLDEN") == "1"
_VOLATILE = frozenset({"latency_ms"})


def _scrub(value: Any) -> Any:
    """Drop wall-clock latencies (the only non-deterministic fields) at any depth."""
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _digest(records: list[Any]) -> str:
    text = json.dumps([_scrub(r) for r in records], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _check(name: str, digest: str) -> None:
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if REGEN:
        golden[name] = digest
        GOLDEN.write_text(json.dumps(golden, indent=2, sort_keys=True) + "\n")
        return
    assert name in golden, f"no golden digest for {name}: regenerate (see module docstring)"
    assert digest == golden[name], f"{name}: decisions differ from the golden run"


def test_phase1_workload_is_unchanged() -> None:
    """Phase 1 on the bench workload (2,000 signals, outcomes fed back) is bit-identical."""
    rng = random.Random(7)
    engine = Layer3Phase1(100_000.0, enable_metrics=False, clock=ManualClock())
    out: list[Any] = []
    for i, (signal, cascade, price) in enumerate(bench_phase1.make_workload(2_000, 42)):
        out.append(engine.calculate_position(signal, cascade, price).to_dict())
        if i % 3 == 0:
            engine.update_from_trade_result(signal.strategy_id, signal.symbol,
                                            rng.gauss(0.004, 0.03))
    out.append(engine.export_state())
    _check("phase1", _digest(out))


def _phase2() -> Layer3Phase2Portfolio:
    p = Layer3Phase2Portfolio(100_000.0, 0.25, enable_metrics=False, allow_short=True,
                              clock=ManualClock())
    rng = random.Random(1)
    for t in range(200):
        common = rng.gauss(0, 0.02)
        p.update_correlations({s: common + rng.gauss(0, 0.01) for s in bench_phase2.SYMBOLS},
                              t)
    return p


def test_phase2_workload_is_unchanged() -> None:
    """Phase 2 on the bench batches (300 batches of 10, correlation history) is identical."""
    p = _phase2()
    cascades = {s: CascadeIndicators.calm() for s in bench_phase2.SYMBOLS}
    cascades["SOL-USD"] = CascadeIndicators(0.002, -0.2, 4.0, 0.9, 4.0)  # an EXIT symbol
    prices = dict.fromkeys(bench_phase2.SYMBOLS, 100.0)
    rng = random.Random(3)
    out: list[Any] = []
    for t, batch in enumerate(bench_phase2.make_batches(300, 0)):
        out.append(p.process_multi_strategy_signals(batch, cascades, prices).to_dict())
        if t % 4 == 0:
            s = batch[0]
            p.phase1.update_from_trade_result(s.strategy_id, s.symbol, rng.gauss(0.003, 0.02))
    out.append(p.export_state())
    _check("phase2", _digest(out))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_phase3_mock_workload_is_unchanged(mode: str) -> None:
    """Phase 3 with the seeded mock model (sync and async) is identical, fallbacks included."""
    clock = ManualClock()
    cfg = Layer3Config(rl=RLConfig(enabled=True, use_mock=True, mock_seed=11))
    h = Layer3Phase3Hybrid(config=cfg, enable_metrics=False, clock=clock, allow_short=True)
    cascades = {s: CascadeIndicators.calm() for s in bench_phase2.SYMBOLS}
    prices = dict.fromkeys(bench_phase2.SYMBOLS, 100.0)
    out: list[Any] = []
    rng = random.Random(5)
    for t, batch in enumerate(bench_phase2.make_batches(200, 2)):
        clock.advance(1.0)
        if mode == "sync":
            alloc = h.process_signals(batch, cascades, prices)
        else:
            alloc = asyncio.run(h.process_signals_async(batch, cascades, prices))
        out.append(alloc.to_dict())
        if t % 5 == 0:
            h.record_outcome(batch[0].symbol, rng.gauss(0.002, 0.02),
                             alloc.provenance.get(batch[0].symbol, {}).get("path") == "rl")
    h.stop()
    state = h.export_state()
    out.append({k: v for k, v in state.items() if k != "circuit_breaker"})
    _check("phase3_mock", _digest(out))


@pytest.mark.skipif(not DATA.exists(), reason=f"real data not found at {DATA} "
                    "(../shared/data beside the repo); CI has it")
@pytest.mark.parametrize("policy", ["phase1", "phase2"])
def test_backtest_on_real_data_is_unchanged(policy: str) -> None:
    """The first 3,000 real BTC/USDT bars replayed through Phase 1 / 2 give the same equity."""
    import numpy as np

    from himari_l3.backtest import make_policy
    from himari_l3.backtest.data import align_bars, load_bars
    from himari_l3.backtest.engine import replay
    from himari_l3.backtest.signals import reference_signals

    bars = load_bars(DATA)
    market = align_bars([bars.take(np.arange(3_000))])
    tape = reference_signals(market)
    rep = replay(market, tape, make_policy(policy, 100_000.0), fees_bps=5.0, slippage_bps=2.0)
    _check(f"backtest_{policy}", _digest([rep.equity.tolist(), rep.positions.tolist()]))


def test_phase2_tight_limits_workload_is_unchanged() -> None:
    """Phase 2 with full Kelly and tight budgets (every limit binds often) is identical."""
    from himari_l3.config.schema import PortfolioConfig, SizingConfig

    sizing = SizingConfig.model_validate({"kelly": {"fraction": 1.0, "max_fraction": 1.0},
                                          "limits": {"max_position_pct": 0.05,
                                                     "allow_short": True}})
    portfolio = PortfolioConfig.model_validate({"max_position_pct": 0.05,
                                                "max_strategy_pct": 0.07,
                                                "max_portfolio_pct": 0.12})
    p = Layer3Phase2Portfolio(100_000.0, enable_metrics=False, config=portfolio,
                              sizing_config=sizing, clock=ManualClock())
    cascades = {s: CascadeIndicators.calm() for s in bench_phase2.SYMBOLS}
    prices = dict.fromkeys(bench_phase2.SYMBOLS, 100.0)
    rng = random.Random(9)
    out: list[Any] = []
    for t, batch in enumerate(bench_phase2.make_batches(300, 4)):
        cascades["AVAX-USD"] = (CascadeIndicators(0.002, -0.2, 4.0, 0.9, 4.0) if t % 7 == 0
                                else CascadeIndicators(0.0008, -0.05, 2.0, 0.5, 2.0))
        out.append(p.process_multi_strategy_signals(batch, cascades, prices).to_dict())
        s = batch[t % len(batch)]
        p.phase1.update_from_trade_result(s.strategy_id, s.symbol, rng.gauss(0.01, 0.02))
    out.append(p.export_state())
    _check("phase2_tight", _digest(out))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_phase3_mock_full_weight_tight_limits_is_unchanged(mode: str) -> None:
    """Phase 3, mock model at full RL weight under tight limits (clips bind) is identical."""
    clock = ManualClock()
    cfg = Layer3Config.model_validate({
        "rl": {"enabled": True, "use_mock": True, "mock_seed": 3, "max_rl_weight": 1.0,
               "mock_success_rate": 0.7},
        "sizing": {"kelly": {"fraction": 1.0}, "limits": {"max_position_pct": 0.04,
                                                           "allow_short": True}},
        "portfolio": {"max_position_pct": 0.04, "max_strategy_pct": 0.06,
                      "max_portfolio_pct": 0.1}})
    h = Layer3Phase3Hybrid(config=cfg, enable_metrics=False, clock=clock)
    cascades = {s: CascadeIndicators.calm() for s in bench_phase2.SYMBOLS}
    prices = dict.fromkeys(bench_phase2.SYMBOLS, 100.0)
    out: list[Any] = []
    for batch in bench_phase2.make_batches(200, 6):
        clock.advance(7.0)
        if mode == "sync":
            alloc = h.process_signals(batch, cascades, prices)
        else:
            alloc = asyncio.run(h.process_signals_async(batch, cascades, prices))
        out.append(alloc.to_dict())
    h.stop()
    out.append(h.get_state()["fallback_reasons"])
    _check("phase3_mock_tight", _digest(out))
