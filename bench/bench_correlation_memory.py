"""Correlation monitor memory under hostile returns rows (issue 13), before and after.

Each scenario runs in a fresh child process that feeds rows through
``Layer3Phase2Portfolio.update_correlations`` (what ``POST /v1/returns`` calls: update, then
``stats()``) and reports its peak RSS above the RSS right before the first row, the time per
row, and how many rows were accepted / refused:

* ``one_row_8000``: the issue's request, one row with 8,000 distinct symbols (144 KB of JSON);
* ``one_row_8000_caps_raised``: the same with the caps raised to 8,000 (after only: it is
  accepted, and ``stats()`` still builds no 8,000 x 8,000 matrix);
* ``window_512``: the worst case the default caps allow, 120 rows x 512 aligned symbols.

``--before-src DIR`` also runs every scenario against another checkout's ``src`` (e.g. the
commit before the fix, exported with ``git archive``), interleaved with the current code.

    .venv/bin/python bench/bench_correlation_memory.py [--before-src /tmp/base/src]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
SRC = Path(__file__).resolve().parents[1] / "src"
SCENARIOS = ("one_row_8000", "one_row_8000_caps_raised", "window_512")
TIMEOUT_SEC = 300


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def child(scenario: str) -> dict[str, Any]:
    """Run one scenario in this process (the parent put the right ``src`` on sys.path)."""
    from himari_l3 import ManualClock
    from himari_l3.phase2 import Layer3Phase2Portfolio

    kwargs: dict[str, Any] = {"enable_metrics": False, "clock": ManualClock()}
    if scenario == "one_row_8000_caps_raised":
        from himari_l3.config.schema import PortfolioConfig, parse_config

        try:
            cfg = parse_config(PortfolioConfig, {"correlation": {
                "max_symbols_per_row": 8_000, "max_symbols": 8_000}})
        except Exception as err:  # the code before the fix has no such keys
            return {"skipped": f"{type(err).__name__}: caps not configurable"}
        kwargs["config"] = cfg
    p = Layer3Phase2Portfolio(100_000.0, **kwargs)
    rng = random.Random(1)
    if scenario == "window_512":
        syms = [f"S{i:03d}" for i in range(512)]
        rows = [{s: rng.gauss(0.0, 0.01) for s in syms} for _ in range(120)]
    else:
        rows = [{f"S{i:05d}": 0.001 for i in range(8_000)}]
    base = _rss_mb()
    accepted = refused = 0
    times = []
    for t, row in enumerate(rows, start=1):
        t0 = time.perf_counter()
        try:
            p.update_correlations(row, t)
            accepted += 1
        except ValueError:
            refused += 1
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"rows": len(rows), "accepted": accepted, "refused": refused,
            "rss_before_mb": round(base, 1), "peak_rss_mb": round(peak, 1),
            "peak_growth_mb": round(peak - base, 1),
            "ms_per_row_mean": round(1e3 * sum(times) / len(times), 2),
            "ms_per_row_max": round(1e3 * max(times), 2)}


def run(scenario: str, src: Path) -> dict[str, Any]:
    code = (f"import sys, json; sys.path.insert(0, {str(src)!r}); "
            f"sys.path.insert(1, {str(Path(__file__).parent)!r}); "
            f"import bench_correlation_memory as b; print(json.dumps(b.child({scenario!r})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=TIMEOUT_SEC, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:]}
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before-src", type=Path, default=None,
                        help="src directory of the code to compare with")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    for scenario in SCENARIOS:
        results[scenario] = {}
        if args.before_src is not None:
            results[scenario]["before"] = run(scenario, args.before_src.resolve())
        results[scenario]["after"] = run(scenario, SRC)
        print(scenario, json.dumps(results[scenario]), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "correlation_memory.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
