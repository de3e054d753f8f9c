"""Backtest throughput: bars per second of a full replay through each phase.

Uses the real two-year hourly BTC/USDT file from ``../shared/data/`` when it is there (17,520
bars), else a seeded synthetic random walk of the same length. Writes
``bench/results/backtest.json``. Run: ``.venv/bin/python bench/bench_backtest.py``.
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


def main() -> int:
    result = run()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "backtest.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"backtest throughput on {result['data']} ({result['bars']} bars)")
    for name, r in result["results"].items():
        print(f"  {name:<10} {r['bars_per_sec']:>10,.0f} bars/s  replay {r['replay_sec']:>7.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
