"""Phase 2 + book + intents vs Phase 2 alone, measured interleaved in one run.

Two engines built alike (same config, same correlation history, metrics on, each on its own
registry) allocate the same seeded batches (10 signals over 5 symbols from 5 strategies,
shorts allowed): A with ``process_multi_strategy_signals`` alone, B through a `Layer3Book`
(standing targets as commitments, whole-book limits, intents with instrument rules). Each
batch is timed on both, in alternating order (A B, B A, ...), so a drift of the machine's
speed hits both alike. Between batches (untimed) B's intents are filled — alternately all
of them and half — so that the book carries positions, partial intents and real deltas, and
the clock moves 60 s (intents expire after 300 s and are re-issued). Target: B's p50 at
most 1.25 x A's. Two workloads, both reported:

* ``stress``: ``bench_phase2``'s batches — every signal drawn afresh each batch (action,
  confidence, edge, volatility, regime): every target moves every batch, longs flip to
  shorts, ~6 intents per batch (the book's worst case);
* ``steady``: the same 25 strategy x symbol pairs, each keeping its action (a 3 % chance to
  change per appearance), edge and volatility, its confidence walking by +-0.02, prices
  walking by ~0.1 % per batch: what a Layer 2 stream looks like minute to minute.

    .venv/bin/python bench/bench_book.py [--batches 2000] [--seed 0] [--workload both]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

import bench_phase2
from prometheus_client import CollectorRegistry

from himari_l3 import CascadeIndicators, ManualClock, MarketRegime, TacticalSignal
from himari_l3.book import Layer3Book, MarketRules, Markets
from himari_l3.config.schema import Layer3Config, parse_config
from himari_l3.observability.metrics import Layer3Metrics
from himari_l3.observability.prometheus import PrometheusObserver
from himari_l3.observers import NULL_OBSERVER, Observer
from himari_l3.phase2 import Layer3Phase2Portfolio

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_RATIO = 1.25


def _engine(cfg: Layer3Config, clock: ManualClock,
            metrics: bool = True) -> tuple[Layer3Phase2Portfolio, Observer]:
    observer: Observer = (PrometheusObserver(Layer3Metrics(CollectorRegistry())) if metrics
                          else NULL_OBSERVER)
    p = Layer3Phase2Portfolio(cfg.portfolio_value, enable_metrics=False, config=cfg.portfolio,
                              sizing_config=cfg.sizing, observer=observer, clock=clock)
    rng = random.Random(1)
    for t in range(200):  # correlation history: the correlation stage does real work
        common = rng.gauss(0, 0.02)
        p.update_correlations({s: common + rng.gauss(0, 0.01)
                               for s in bench_phase2.SYMBOLS}, t)
    return p, observer


def _fill(book: Layer3Book, intents: list[Any], share: float) -> None:
    if intents:
        book.apply_fills([{"symbol": i.symbol, "side": i.side, "quantity": i.quantity * share,
                           "price": i.reference_price, "fee": 0.01,
                           "client_order_id": i.client_order_id} for i in intents])


def steady_batches(n: int, seed: int) -> tuple[list[list[TacticalSignal]],
                                                 list[dict[str, float]]]:
    """``n`` batches of 10 signals from persistent pairs, and a price path (``steady``)."""
    rng = random.Random(seed)
    regimes = list(MarketRegime)
    pairs = {(st, sy): {"action": rng.choice(bench_phase2.ACTIONS),
                        "confidence": rng.uniform(0.4, 0.9), "risk": rng.uniform(0.0, 0.6),
                        "regime": rng.choice(regimes), "er": rng.uniform(0.005, 0.05),
                        "vol": rng.uniform(0.02, 0.15)}
             for st in bench_phase2.STRATEGIES for sy in bench_phase2.SYMBOLS}
    keys = sorted(pairs)
    price = dict.fromkeys(bench_phase2.SYMBOLS, 100.0)
    batches, paths = [], []
    for t in range(n):
        price = {s: p * (1.0 + rng.gauss(0.0, 0.001)) for s, p in price.items()}
        out = []
        for st, sy in rng.sample(keys, 10):
            p = pairs[(st, sy)]
            if rng.random() < 0.03:
                p["action"] = rng.choice(bench_phase2.ACTIONS)
            p["confidence"] = min(0.95, max(0.35, p["confidence"] + rng.uniform(-0.02, 0.02)))
            out.append(TacticalSignal(st, sy, p["action"], p["confidence"], p["risk"],
                                      p["regime"], t, p["er"], p["vol"]))
        batches.append(out)
        paths.append(price)
    return batches, paths


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def _summary(us: list[float]) -> dict[str, float]:
    return {"p50_us": percentile(us, 0.5), "p90_us": percentile(us, 0.9),
            "p99_us": percentile(us, 0.99), "mean_us": statistics.fmean(us)}


def run(batches: int = 2000, seed: int = 0, warmup: int = 100, scrape_every: int = 50,
        write: bool = True, workload: str = "stress", metrics: bool = True) -> dict[str, Any]:
    """Run the interleaved bench; returns (and writes) the result. Bounded: <= 20,000."""
    batches = min(batches, 20_000)
    cfg = parse_config(Layer3Config, {"sizing": {"limits": {"allow_short": True}}})
    clock_a, clock_b = ManualClock(), ManualClock()
    alone, obs_a = _engine(cfg, clock_a, metrics)
    inner, obs_b = _engine(cfg, clock_b, metrics)
    rules = {s: MarketRules(s, step_size=0.001, tick_size=0.01, min_notional=5.0)
             for s in bench_phase2.SYMBOLS}
    book = Layer3Book(inner, config=cfg, markets=Markets(rules), observer=obs_b, clock=clock_b)
    cascades = {s: CascadeIndicators.calm() for s in bench_phase2.SYMBOLS}
    if workload == "steady":
        work, paths = steady_batches(warmup + batches, seed)
    else:
        work = bench_phase2.make_batches(warmup + batches, seed)
        paths = [dict.fromkeys(bench_phase2.SYMBOLS, 100.0)] * len(work)
    a_us: list[float] = []
    b_us: list[float] = []
    intents_issued = 0
    for i, (batch, prices) in enumerate(zip(work, paths, strict=True)):
        for clock in (clock_a, clock_b):
            clock.advance(60.0)
        order = ("a", "b") if i % 2 == 0 else ("b", "a")
        out = None
        for side in order:
            t0 = time.perf_counter()
            if side == "a":
                alone.process_multi_strategy_signals(batch, cascades, prices)
            else:
                out = book.allocate(batch, cascades, prices)
            dt = (time.perf_counter() - t0) * 1e6
            if i >= warmup:
                (a_us if side == "a" else b_us).append(dt)
        assert out is not None
        intents_issued += len(out.step.result.issued)
        _fill(book, out.step.result.issued, 1.0 if i % 2 else 0.5)  # untimed
        if i % scrape_every == 0:
            obs_a.flush()
            obs_b.flush()
    a, b = _summary(a_us), _summary(b_us)
    result = {
        "name": "bench_book", "workload": workload, "batches": batches,
        "signals_per_batch": 10, "seed": seed,
        "metrics": "on (isolated registries)" if metrics else "off",
        "python": platform.python_version(),
        "phase2_alone": a, "phase2_book_intents": b,
        "ratio_p50": b["p50_us"] / a["p50_us"], "ratio_p99": b["p99_us"] / a["p99_us"],
        "intents_per_batch": intents_issued / len(work),
        "open_intents_at_end": len(book.intents()), "target_ratio_p50": TARGET_RATIO,
    }
    result["meets_target"] = result["ratio_p50"] <= TARGET_RATIO
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workload", choices=("stress", "steady", "both"), default="both")
    ap.add_argument("--metrics", choices=("on", "off"), default="on")
    args = ap.parse_args()
    names = ("stress", "steady") if args.workload == "both" else (args.workload,)
    results = {w: run(args.batches, args.seed, workload=w, write=False,
                      metrics=args.metrics == "on") for w in names}
    print(f"{'':<36}{'p50 µs':>10}{'p90 µs':>10}{'p99 µs':>10}")
    for w, r in results.items():
        for key in ("phase2_alone", "phase2_book_intents"):
            s = r[key]
            print(f"{w + ' ' + key:<36}{s['p50_us']:>10.1f}{s['p90_us']:>10.1f}"
                  f"{s['p99_us']:>10.1f}")
        print(f"{w}: ratio p50 {r['ratio_p50']:.3f} (target <= {TARGET_RATIO}), p99 "
              f"{r['ratio_p99']:.3f}; {r['intents_per_batch']:.2f} intents per batch; "
              f"meets: {r['meets_target']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "bench_book.json" if args.metrics == "on" else "bench_book_metrics_off.json"
    (RESULTS / name).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
