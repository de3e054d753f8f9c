"""Run every benchmark (each in its own process, bounded in time) and collect the results.

    .venv/bin/python bench/run_all.py            # all of them
    .venv/bin/python bench/run_all.py phase1 backtest

Each ``bench/bench_<name>.py`` writes ``bench/results/<name>.json``; this script runs them in
turn and writes ``bench/results/all.json`` with the machine and the date. docs/performance.md
holds the table of a recorded run.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
TIMEOUT_SEC = 900


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in BENCH.glob("bench_*.py"))


def main(argv: list[str]) -> int:
    names = argv or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {available()}", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    collected: dict[str, object] = {}
    failed = []
    for name in names:
        print(f"== {name}", flush=True)
        t0 = time.monotonic()
        try:
            proc = subprocess.run([sys.executable, str(BENCH / f"bench_{name}.py")],
                                  timeout=TIMEOUT_SEC, check=False)
            ok = proc.returncode == 0
        except subprocess.TimeoutExpired:
            ok = False
        print(f"   {'ok' if ok else 'FAILED'} in {time.monotonic() - t0:.1f} s", flush=True)
        result_file = RESULTS / f"{name}.json"
        if not result_file.exists():
            result_file = RESULTS / f"bench_{name}.json"
        if ok and result_file.exists():
            collected[name] = json.loads(result_file.read_text())
        else:
            failed.append(name)
    summary = {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "results": collected, "failed": failed,
    }
    (RESULTS / "all.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"results: {RESULTS / 'all.json'}" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
