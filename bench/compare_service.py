"""A/B the service's latency under load against another commit, interleaved, in one run.

    .venv/bin/python bench/compare_service.py --ref main --rates 100,300,500 --duration 10

For each round and each rate, ``bench_service.run`` (a real uvicorn on 127.0.0.1, SQLite
``synchronous=FULL``, ``POST /v1/allocate`` with 10 signals, open-loop load) runs once
against this checkout (A) and once against ``ref``'s ``src/`` exported into a temporary
folder (B, ``compare.export_src``), in alternating order (A B, B A, ...), so a drift of
the machine's load hits both sides. Reported per rate: the median over rounds of each side's
p50/p99, achieved rate (answers within the client's 5 s timeout) and resident memory at the
end, and the median of the per-round p99 ratios A/B. Bounded: at most
5 rounds, 8 rates and 60 s per run. Writes bench/results/compare_service.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import bench_service
from compare import BENCH, REPO, export_src


def imported_from(src: Path) -> str:
    """Where a server started with ``src`` on its path imports ``himari_l3`` from."""
    code = "import himari_l3, os; print(os.path.dirname(himari_l3.__file__))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, timeout=60, env=bench_service.server_env(src))
    return out.stdout.strip()


def compare(ref: str, rates: list[float], rounds: int, duration: float) -> dict[str, Any]:
    """Interleaved rounds; returns {rate: {"a": [...runs], "b": [...], "summary": {...}}}."""
    with tempfile.TemporaryDirectory(prefix="himari-ab-service-") as tmp:
        sides = {"a": REPO / "src", "b": export_src(ref, Path(tmp))}
        for side, src in sides.items():
            found = imported_from(src)
            if not found.startswith(str(src)):
                raise RuntimeError(f"side {side}: himari_l3 imported from {found}, not {src}")
        runs: dict[float, dict[str, list[dict[str, Any]]]] = {
            r: {"a": [], "b": []} for r in rates}
        for k in range(rounds):
            for rate in rates:
                for side in (("a", "b") if k % 2 == 0 else ("b", "a")):
                    res = bench_service.run(duration, rate, write=False, src=sides[side])
                    runs[rate][side].append(res)
                    print(f"round {k + 1} rate {rate:g} {side}: p50 "
                          f"{res['latency_ms']['p50']:.2f} p99 {res['latency_ms']['p99']:.2f}"
                          f" ms, {res['achieved_rps']:.0f} req/s, errors {res['errors']}",
                          file=sys.stderr, flush=True)
    return {str(rate): {**sides_runs, "summary": summary(sides_runs)}
            for rate, sides_runs in runs.items()}


def summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians over rounds per side, and the median per-round p99 ratio A/B."""
    def med(side: str, key: str) -> float:
        return float(statistics.median(r["latency_ms"][key] for r in runs[side]))
    out: dict[str, Any] = {f"{side}_{key}": med(side, key)
                           for side in ("a", "b") for key in ("p50", "p99")}
    for side in ("a", "b"):
        out[f"{side}_rps"] = statistics.median(r["achieved_rps"] for r in runs[side])
        out[f"{side}_errors"] = sum(sum(r["errors"].values()) for r in runs[side])
        out[f"{side}_rss_mb"] = statistics.median(r["rss_kb"]["end"] for r in runs[side]) / 1024
    out["p99_ratio"] = statistics.median(
        x["latency_ms"]["p99"] / y["latency_ms"]["p99"]
        for x, y in zip(runs["a"], runs["b"], strict=True))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="main", help="the commit to compare against (B)")
    ap.add_argument("--rates", default="100,300,500", help="comma-separated req/s")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    args = ap.parse_args(argv)
    rates = [float(x) for x in args.rates.split(",") if x.strip()][:8]
    rounds = max(1, min(args.rounds, 5))
    duration = max(1.0, min(args.duration, 60.0))
    result = compare(args.ref, rates, rounds, duration)
    print(f"A = this checkout, B = {args.ref}; medians over {rounds} interleaved rounds of "
          f"{duration:g} s; SQLite synchronous=FULL; cpus {os.cpu_count()}")
    print(f"{'req/s':>7}{'A p50':>9}{'A p99':>9}{'B p50':>9}{'B p99':>9}{'A/B p99':>9}"
          f"{'A rps':>8}{'B rps':>8}{'A err':>7}{'B err':>7}{'A MB':>7}{'B MB':>7}")
    for rate, r in result.items():
        s = r["summary"]
        print(f"{float(rate):>7g}{s['a_p50']:>9.2f}{s['a_p99']:>9.2f}{s['b_p50']:>9.2f}"
              f"{s['b_p99']:>9.2f}{s['p99_ratio']:>9.3f}{s['a_rps']:>8.0f}{s['b_rps']:>8.0f}"
              f"{s['a_errors']:>7}{s['b_errors']:>7}{s['a_rss_mb']:>7.0f}{s['b_rss_mb']:>7.0f}")
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "compare_service.json").write_text(json.dumps(
        {"ref": args.ref, "rounds": rounds, "duration_sec": duration, "rates": result},
        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
