"""Backtest throughput: bars per second of a full replay through each phase, and what the
paper executor and the trading states cost a Phase 2 replay.

Uses the real two-year hourly BTC/USDT file from ``../shared/data/`` when it is there (17,520
bars), else a seeded synthetic random walk of the same length. Writes
``bench/results/backtest.json``. Run: ``.venv/bin/python bench/bench_backtest.py``
(``--execution-only``: only the execution comparison; ``--rounds N``: its rounds, default 3).

The execution comparison replays Phase 2 over the same market and signal tape under four
execution setups, interleaved round by round in one process (so drift of the shared machine
hits all of them alike): ``direct`` (the book's intents filled whole at the close, fee and
slippage in bps: no fill model) with the trading states off — the "before" — then the
paper executor alone, the trading states alone, and both (the default: "after"). Each
setup's figure is its median over the rounds; the issue's bound is after / before ≥ 0.9
in bars/s (≤ 10 % added).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "btc_usdt_1h.csv"
RESULTS = ROOT / "bench" / "results"


def _synthetic(path: Path, bars: int = 17_520, seed: int = 1) -> Path:
    rng = random.Random(seed)
    price, t0 = 40_000.0, 1_704_067_200_000
    with path.open("w", encoding="utf-8") as fh:
        fh.write("timestamp,open,high,low,close,volume\n")
        for i in range(bars):
            new = price * math.exp(rng.gauss(0.0, 0.006))
            hi, lo = max(price, new) * 1.001, min(price, new) * 0.999
            fh.write(f"{t0 + i * 3_600_000},{price:.2f},{hi:.2f},{lo:.2f},{new:.2f},"
                     f"{rng.uniform(500, 2000):.3f}\n")
            price = new
    return path


def run(phases: tuple[str, ...] = ("1", "2", "3", "3-mock")) -> dict[str, Any]:
    """Replay the file once per phase (no ablation, no shuffles); returns bars/s each."""
    from himari_l3.backtest import run_backtest

    with tempfile.TemporaryDirectory() as tmp:
        prices = DATA if DATA.exists() else _synthetic(Path(tmp) / "synthetic_usdt_1h.csv")
        out: dict[str, Any] = {}
        for name in phases:
            phase, rl = (3, "mock") if name == "3-mock" else (int(name), "off")
            t0 = time.perf_counter()
            summary = run_backtest([prices], out_dir=Path(tmp) / f"p{name}", phase=phase,
                                   rl=rl, shuffles=0, ablation=False)
            wall = time.perf_counter() - t0
            perf = summary["performance"]
            out[f"phase{name}"] = {"bars_per_sec": round(perf["bars_per_sec"], 1),
                                   "replay_sec": round(perf["elapsed_sec"], 3),
                                   "wall_sec_with_report": round(wall, 3)}
    return {
        "benchmark": "backtest throughput",
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "data": str(DATA.name) if DATA.exists() else "synthetic 17,520 hourly bars",
        "bars": 17_520 if not DATA.exists() else sum(1 for _ in DATA.open()) - 1,
        "results": out,
        "target": "phase2 full replay < 30 s",
    }


EXECUTION_SETUPS = (("direct, no states", False, False), ("paper, no states", True, False),
                    ("direct, states", False, True), ("paper + states", True, True))


def execution_overhead(rounds: int = 3) -> dict[str, Any]:
    """Phase 2 replays under each of ``EXECUTION_SETUPS``, interleaved ``rounds`` times
    (module docstring); bars/s per setup (median and every round) and after / before."""
    import statistics

    from himari_l3.backtest.data import align_bars, load_bars
    from himari_l3.backtest.engine import ExecutionSetup, replay
    from himari_l3.backtest.policies import make_policy
    from himari_l3.backtest.signals import reference_signals

    with tempfile.TemporaryDirectory() as tmp:
        prices = DATA if DATA.exists() else _synthetic(Path(tmp) / "synthetic_usdt_1h.csv")
        market = align_bars([load_bars(prices)])
    tape = reference_signals(market)
    base = ExecutionSetup.from_costs(100_000.0, 5.0, 2.0)
    seen: dict[str, list[float]] = {name: [] for name, _, _ in EXECUTION_SETUPS}
    for _ in range(rounds):
        for name, paper, states in EXECUTION_SETUPS:
            setup = ExecutionSetup(base.config, base.markets, paper, states,
                                   base.resume_after_hours)
            pol = make_policy("phase2", 100_000.0, periods_per_year=market.periods_per_year,
                              config=setup.config)
            try:
                rep = replay(market, tape, pol, execution=setup)
            finally:
                pol.close()
            seen[name].append(rep.bars_per_sec)
    med = {name: statistics.median(v) for name, v in seen.items()}
    before, after = med["direct, no states"], med["paper + states"]
    return {"bars": market.n_bars, "rounds": rounds,
            "bars_per_sec": {k: round(v, 1) for k, v in med.items()},
            "rounds_bars_per_sec": {k: [round(x, 1) for x in v] for k, v in seen.items()},
            "after_over_before": round(after / before, 4),
            "added_pct": round(100.0 * (before / after - 1.0), 2),
            "target": "paper executor + trading states add <= 10 % (after / before >= 0.9)"}


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--execution-only", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    result = ({"benchmark": "backtest throughput", "results": {}} if args.execution_only
              else run())
    result["execution_overhead"] = ex = execution_overhead(args.rounds)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "backtest_execution.json" if args.execution_only else "backtest.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    if result["results"]:
        print(f"backtest throughput on {result['data']} ({result['bars']} bars)")
    for name, r in result["results"].items():
        print(f"  {name:<10} {r['bars_per_sec']:>10,.0f} bars/s  replay {r['replay_sec']:>7.2f} s")
    print(f"Phase 2 replay by execution setup ({ex['bars']} bars, median of {ex['rounds']} "
          "interleaved rounds)")
    for name, v in ex["bars_per_sec"].items():
        print(f"  {name:<18} {v:>10,.0f} bars/s  rounds {ex['rounds_bars_per_sec'][name]}")
    print(f"  paper + states / direct, no states = {ex['after_over_before']:.3f} "
          f"({ex['added_pct']:+.1f} % time per bar; target <= 10 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
