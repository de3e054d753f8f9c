"""Phase 1 latency benchmark: per-call ``calculate_position`` time, metrics on and off.

Seeded workload: ``n`` signals (default 10,000) over 20 symbols and 3 strategies, ordinary
ranges (confidence U[0.3, 0.95], expected return U[0.2 %, 6 %], volatility U[1 %, 25 %]),
80 % buys, 10 % sells, 10 % holds, random regimes, 90 % calm / 10 % stressed cascade readings.

Run ``.venv/bin/python bench/bench_phase1.py [--n N] [--seed S]``; it prints a table and
writes ``bench/results/phase1.json``. A bench runner can ``import bench_phase1`` and call
``run(n=..., seed=...)``, which returns the same dict without writing anything.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from himari_l3 import CascadeIndicators, MarketRegime, TacticalAction, TacticalSignal
from himari_l3.observability.metrics import Layer3Metrics
from himari_l3.observability.prometheus import PrometheusObserver
from himari_l3.phase1 import Layer3Phase1

try:  # absent before issue #14: run_all also runs this bench on older commits
    from himari_l3.runtime.heap import settle_heap
except ImportError:  # pragma: no cover
    settle_heap = None  # type: ignore[assignment]

RESULTS = Path(__file__).resolve().parent / "results" / "phase1.json"
TARGETS_US = {"metrics_on_p50": 10.0, "metrics_on_p99": 30.0}  # issue #14
CAP_LIMITS = ("position_cap", "max_notional", "kelly_cap")

Call = tuple[TacticalSignal, CascadeIndicators, float]


def make_workload(n: int, seed: int, symbols: int = 20) -> list[Call]:
    """``n`` seeded (signal, cascade, price) calls over ``symbols`` symbols."""
    rng = random.Random(seed)
    regimes = list(MarketRegime)
    prices = {f"SYM{i:02d}": 10 ** rng.uniform(-1, 5) for i in range(symbols)}
    actions = ([TacticalAction.BUY] * 5 + [TacticalAction.STRONG_BUY] * 3
               + [TacticalAction.SELL, TacticalAction.HOLD])
    calls: list[Call] = []
    for i in range(n):
        symbol = f"SYM{rng.randrange(symbols):02d}"
        signal = TacticalSignal(
            strategy_id=f"strat{rng.randrange(3)}", symbol=symbol, action=rng.choice(actions),
            confidence=rng.uniform(0.3, 0.95), risk_score=rng.uniform(0.0, 1.0),
            regime=rng.choice(regimes), timestamp_ns=1_700_000_000_000_000_000 + i,
            expected_return=rng.uniform(0.002, 0.06),
            predicted_volatility=rng.uniform(0.01, 0.25),
            sentiment_score=rng.choice((None, rng.uniform(0.0, 1.0))),
            sentiment_confidence=rng.uniform(0.0, 1.0),
        )
        if rng.random() < 0.9:
            cascade = CascadeIndicators(rng.uniform(-3e-4, 3e-4), rng.uniform(-0.02, 0.05),
                                        rng.uniform(0.5, 1.5), rng.uniform(0.0, 0.2),
                                        rng.uniform(-2.0, 0.5))
        else:
            cascade = CascadeIndicators(rng.uniform(-3e-3, 3e-3), rng.uniform(-0.3, 0.0),
                                        rng.uniform(1.0, 6.0), rng.uniform(0.0, 1.0),
                                        rng.uniform(-1.0, 6.0))
        calls.append((signal, cascade, prices[symbol] * rng.uniform(0.98, 1.02)))
    return calls


def _time_calls(engine: Layer3Phase1, calls: list[Call]) -> list[float]:
    # The decisions are dropped as a caller would: keeping 10,000 of them (with their
    # traces) alive made every garbage collection walk them, which showed in the p99.
    lat_us: list[float] = []
    clock = time.perf_counter_ns
    calc = engine.calculate_position
    for signal, cascade, price in calls:
        t0 = clock()
        calc(signal, cascade, price)
        lat_us.append((clock() - t0) / 1e3)
    return lat_us


def _decisions(calls: list[Call]) -> list[Any]:
    """The workload's decisions on a fresh engine (untimed: for their shape)."""
    engine = Layer3Phase1(portfolio_value=100_000.0, enable_metrics=False)
    return [engine.calculate_position(s, c, p) for s, c, p in calls]


def _summary(lat_us: list[float]) -> dict[str, float]:
    s = sorted(lat_us)
    q = statistics.quantiles(s, n=100, method="inclusive")
    return {"p50_us": round(q[49], 2), "p90_us": round(q[89], 2), "p99_us": round(q[98], 2),
            "mean_us": round(statistics.fmean(s), 2), "max_us": round(s[-1], 2)}


def _size_shape(decisions: list[Any]) -> dict[str, Any]:
    directional = [d for d in decisions if d.action is not TacticalAction.HOLD]
    buys = [d for d in directional if d.diagnostics["direction"] > 0]
    sized = [d for d in buys if d.position_size_usd != 0.0]
    at_cap = sum(d.diagnostics["binding_limit"] in CAP_LIMITS for d in directional)
    buys_at_cap = sum(d.diagnostics["binding_limit"] in CAP_LIMITS for d in buys)
    cap = buys[0].diagnostics["cap_usd"] if buys else float("nan")
    pct = sorted(d.position_size_usd / cap for d in sized)
    deciles = statistics.quantiles(pct, n=10) if len(pct) >= 10 else []
    return {
        "decisions": len(decisions),
        "directional": len(directional),
        "fraction_at_cap": round(at_cap / max(1, len(directional)), 4),
        "fraction_of_buys_at_cap": round(buys_at_cap / max(1, len(buys)), 4),
        "fraction_of_buys_zero": round(1 - len(sized) / max(1, len(buys)), 4),
        "buy_size_deciles_pct_of_cap": [round(100 * x, 1) for x in deciles],
        "cap_usd": cap,
    }


def run(n: int = 10_000, seed: int = 42, warmup: int = 2_000) -> dict[str, Any]:
    """Benchmark ``n`` seeded calls with metrics off and on; returns the results dict.

    ``metrics_on_service_gc``: metrics on, under the collector settings ``himari-l3 serve``
    and ``run`` apply after start-up (``runtime/heap.py``); restored afterwards."""
    calls = make_workload(n, seed)
    warm = make_workload(warmup, seed + 1)
    modes: dict[str, Any] = {}
    for mode in ("metrics_off", "metrics_on", "metrics_on_service_gc"):
        if mode == "metrics_on_service_gc" and settle_heap is None:
            continue  # an older tree (run_all's previous commit) has no runtime/heap.py
        observer = (PrometheusObserver(Layer3Metrics(CollectorRegistry()))
                    if mode != "metrics_off" else None)
        engine = Layer3Phase1(portfolio_value=100_000.0, enable_metrics=False,
                              observer=observer)
        _time_calls(engine, warm)  # warm caches, label children, branch paths
        threshold = gc.get_threshold()
        if mode == "metrics_on_service_gc":
            settle_heap()
        try:
            modes[mode] = _summary(_time_calls(engine, calls))
        finally:
            gc.set_threshold(*threshold)
            gc.unfreeze()
    shape = _size_shape(_decisions(calls))
    def meets(mode: str) -> bool:
        if mode not in modes:
            return False
        return bool(modes[mode]["p50_us"] <= TARGETS_US["metrics_on_p50"]
                    and modes[mode]["p99_us"] <= TARGETS_US["metrics_on_p99"])

    return {
        "benchmark": "phase1.calculate_position",
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "processor": platform.machine()},
        "n": n, "seed": seed, "warmup": warmup, "symbols": 20,
        **modes,
        "targets_us": TARGETS_US,
        "meets_targets": meets("metrics_on"),
        "meets_targets_service_gc": meets("metrics_on_service_gc"),
        "sizes": shape,
    }


def _print(result: dict[str, Any]) -> None:
    print(f"Phase 1 calculate_position  n={result['n']} seed={result['seed']} "
          f"({result['machine']['cpus']} cpus, Python {result['machine']['python']})")
    print(f"{'mode':<24}{'p50 us':>10}{'p90 us':>10}{'p99 us':>10}{'mean us':>10}"
          f"{'max us':>10}")
    for mode in ("metrics_off", "metrics_on", "metrics_on_service_gc"):
        if mode not in result:
            continue
        r = result[mode]
        print(f"{mode:<24}{r['p50_us']:>10.1f}{r['p90_us']:>10.1f}{r['p99_us']:>10.1f}"
              f"{r['mean_us']:>10.1f}{r['max_us']:>10.1f}")
    t = result["targets_us"]
    print(f"target (metrics on): p50 <= {t['metrics_on_p50']:.0f} us, p99 <= "
          f"{t['metrics_on_p99']:.0f} us -> {'met' if result['meets_targets'] else 'MISSED'}; "
          f"with the service's collector settings "
          f"{'met' if result['meets_targets_service_gc'] else 'MISSED'}")
    s = result["sizes"]
    print(f"sizes: {100 * s['fraction_at_cap']:.2f} % of directional decisions at a cap "
          f"({100 * s['fraction_of_buys_at_cap']:.2f} % of buys); buy size deciles "
          f"(% of cap): {s['buy_size_deciles_pct_of_cap']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run(n=args.n, seed=args.seed, warmup=args.warmup)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    _print(result)
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
