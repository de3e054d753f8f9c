"""Phase 2 latency bench: seeded batches of 10 signals over 5 symbols from 5 strategies.

Metrics are on (an isolated Prometheus registry). The observer defers metric writes to
collection time, so the bench "scrapes" (flushes) every ``scrape_every`` batches outside the
timed region and reports that cost per batch separately. Targets: p50 <= 200 µs,
p99 <= 600 µs per batch.

    .venv/bin/python bench/bench_phase2.py [--batches 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from himari_l3 import CascadeIndicators, ManualClock, MarketRegime, TacticalSignal
from himari_l3.observability.metrics import Layer3Metrics
from himari_l3.observability.prometheus import PrometheusObserver
from himari_l3.phase2 import Layer3Phase2Portfolio

try:  # absent before issue #14: run_all also runs this bench on older commits
    from himari_l3.runtime.heap import settle_heap
except ImportError:  # pragma: no cover
    settle_heap = None  # type: ignore[assignment]

RESULTS = Path(__file__).resolve().parent / "results"
SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD", "AVAX-USD", "LINK-USD"]
STRATEGIES = ["momentum", "mean_reversion", "breakout", "carry", "sentiment"]
ACTIONS = ["STRONG_BUY", "BUY", "BUY", "HOLD", "SELL", "STRONG_SELL"]
TARGET_P50_US, TARGET_P99_US = 150.0, 400.0  # issue #14


def make_batches(n: int, seed: int, per_batch: int = 10) -> list[list[TacticalSignal]]:
    """``n`` batches of ``per_batch`` signals on distinct strategy x symbol pairs."""
    rng = random.Random(seed)
    pairs = [(s, y) for s in STRATEGIES for y in SYMBOLS]
    regimes = list(MarketRegime)
    out = []
    for t in range(n):
        out.append([
            TacticalSignal(strat, sym, rng.choice(ACTIONS), rng.uniform(0.3, 0.95),
                           rng.uniform(0.0, 0.8), rng.choice(regimes), t,
                           rng.uniform(0.002, 0.06), rng.uniform(0.01, 0.25))
            for strat, sym in rng.sample(pairs, per_batch)])
    return out


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def _timed(p: Layer3Phase2Portfolio, observer: PrometheusObserver,
           work: list[list[TacticalSignal]], cascades: dict[str, CascadeIndicators],
           prices: dict[str, float], scrape_every: int) -> tuple[list[float], float]:
    """Each batch's seconds, and the seconds of the scrapes' metric flushes (untimed)."""
    times: list[float] = []
    flush_total = 0.0
    for i, b in enumerate(work, 1):
        t0 = time.perf_counter()
        p.process_multi_strategy_signals(b, cascades, prices)
        times.append(time.perf_counter() - t0)
        if i % scrape_every == 0:
            f0 = time.perf_counter()
            observer.flush()
            flush_total += time.perf_counter() - f0
    return times, flush_total


def run(batches: int = 2000, seed: int = 0, scrape_every: int = 50, warmup: int = 100,
        write: bool = True, service_gc: bool = False) -> dict[str, Any]:
    """Run the bench; returns (and writes) the result dict. Bounded: ``batches`` <= 20,000.
    ``service_gc``: time under the collector settings ``himari-l3 serve`` applies after
    start-up (``runtime/heap.py``; restored afterwards)."""
    batches = min(batches, 20_000)
    rng = random.Random(seed + 1)
    observer = PrometheusObserver(Layer3Metrics(CollectorRegistry()))
    p = Layer3Phase2Portfolio(100_000.0, 0.25, enable_metrics=True, allow_short=True,
                              observer=observer, clock=ManualClock())
    for t in range(200):  # correlation history, so the correlation stage does real work
        common = rng.gauss(0, 0.02)
        p.update_correlations({s: common + rng.gauss(0, 0.01) for s in SYMBOLS}, t)
    cascades = {s: CascadeIndicators.calm() for s in SYMBOLS}
    prices = dict.fromkeys(SYMBOLS, 100.0)
    work = make_batches(warmup + batches, seed)
    for b in work[:warmup]:
        p.process_multi_strategy_signals(b, cascades, prices)
    observer.flush()
    threshold = gc.get_threshold()
    if service_gc:
        if settle_heap is None:
            raise SystemExit("service_gc: this tree has no himari_l3.runtime.heap")
        settle_heap()
    try:
        times, flush_total = _timed(p, observer, work[warmup:], cascades, prices,
                                    scrape_every)
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
    us = [t * 1e6 for t in times]
    result = {
        "name": "bench_phase2", "batches": batches, "signals_per_batch": 10, "seed": seed,
        "metrics": "on (isolated registry)", "service_gc": service_gc,
        "python": platform.python_version(),
        "p50_us": percentile(us, 0.50), "p90_us": percentile(us, 0.90),
        "p99_us": percentile(us, 0.99), "max_us": max(us), "mean_us": statistics.fmean(us),
        "metric_flush_us_per_batch": flush_total * 1e6 / batches,
        "target_p50_us": TARGET_P50_US, "target_p99_us": TARGET_P99_US,
    }
    result["meets_p50"] = result["p50_us"] <= TARGET_P50_US
    result["meets_p99"] = result["p99_us"] <= TARGET_P99_US
    if write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "bench_phase2.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def print_table(r: dict[str, Any]) -> None:
    print(f"{'metric':<34}{'value':>12}{'target':>12}")
    print(f"{'p50 per batch (µs)':<34}{r['p50_us']:>12.1f}{r['target_p50_us']:>12.0f}")
    print(f"{'p90 per batch (µs)':<34}{r['p90_us']:>12.1f}{'':>12}")
    print(f"{'p99 per batch (µs)':<34}{r['p99_us']:>12.1f}{r['target_p99_us']:>12.0f}")
    print(f"{'max per batch (µs)':<34}{r['max_us']:>12.1f}{'':>12}")
    print(f"{'metric flush per batch (µs)':<34}{r['metric_flush_us_per_batch']:>12.1f}{'':>12}")
    print(f"meets p50: {r['meets_p50']}  meets p99: {r['meets_p99']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--service-gc", action="store_true",
                    help="time under the collector settings himari-l3 serve applies")
    args = ap.parse_args()
    print_table(run(args.batches, args.seed, service_gc=args.service_gc))


if __name__ == "__main__":
    main()
