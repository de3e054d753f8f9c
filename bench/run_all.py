"""Every headline figure against its target and against the previous commit, in one run.

    .venv/bin/python bench/run_all.py                      # against HEAD~1, 3 rounds
    .venv/bin/python bench/run_all.py --ref e5daff3 --rounds 5
    .venv/bin/python bench/run_all.py --only phase1 phase2 --no-compile

Sides: this checkout's ``src/`` (pure Python), the same compiled with mypyc (``setup.py``,
``HIMARI_L3_COMPILE=1``, built into a temporary copy; skipped without a C compiler), and
the previous commit's ``src/`` (``git archive``; compiled too when that commit has the
compiled build). Every workload is this checkout's ``bench/`` module, run in a fresh
interpreter with the side's ``src/`` first on ``PYTHONPATH`` (so servers the workload
starts run that side's code too). Rounds are interleaved (this, previous, this, ...), so a
drift of the machine's speed hits every side; each cell is the median over rounds and the
ratio is the median of the per-round ratios this ÷ previous. Heavy workloads (service,
backtest, RL) run ``--heavy-rounds`` rounds (default 1).

Prints one markdown table (figure, build, this commit, target, met, previous commit, ratio)
and writes ``bench/results/all.json``; docs/performance.md records a run. Bounded: at most
15 rounds, each child 900 s. The other ``bench_*.py`` scripts stay runnable on their own.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compare import BENCH, REPO, archive

RESULTS = BENCH / "results"
CHILD_TIMEOUT_SEC = 900
BUILD_FILES = ("setup.py", "pyproject.toml", "README.md", "build_backend")


@dataclass(frozen=True)
class Workload:
    """One child run: ``module.call`` returns a dict the figures read from."""

    module: str
    call: str
    heavy: bool = False


@dataclass(frozen=True)
class Figure:
    name: str
    workload: str
    path: tuple[str, ...]
    unit: str
    target: float | None = None
    higher_is_better: bool = False

    def met(self, value: float | None) -> str:
        if self.target is None or value is None:
            return ""
        ok = value >= self.target if self.higher_is_better else value <= self.target
        return "yes" if ok else "no"

    def target_text(self) -> str:
        if self.target is None:
            return "—"
        return f"{'≥' if self.higher_is_better else '≤'} {self.target:g} {self.unit}"


WORKLOADS: dict[str, Workload] = {
    "phase1": Workload("bench_phase1", "run(n=10_000, seed=42)"),
    "phase2": Workload("bench_phase2", "run(batches=2000, seed=0, write=False)"),
    "phase2-service-gc": Workload("bench_phase2",
                                 "run(batches=2000, seed=0, write=False, service_gc=True)"),
    "book": Workload("bench_book", "run(batches=2000, write=False, workload='steady')"),
    "backtest": Workload("bench_backtest", "run(phases=('2',))", heavy=True),
    "execution": Workload("bench_backtest", "execution_overhead(rounds=1)", heavy=True),
    "rl": Workload("bench_rl", "run(decisions=60, runs=3, write=False)", heavy=True),
    "service": Workload("bench_service", "run(duration_sec=20.0, rate=300.0, write=False)",
                        heavy=True),
}

FIGURES: tuple[Figure, ...] = (
    Figure("Phase 1 p50, metrics on", "phase1", ("metrics_on", "p50_us"), "µs", 10),
    Figure("Phase 1 p99, metrics on", "phase1", ("metrics_on", "p99_us"), "µs", 30),
    Figure("Phase 1 p50, metrics on, the service's collector settings", "phase1",
           ("metrics_on_service_gc", "p50_us"), "µs", 10),
    Figure("Phase 1 p99, metrics on, the service's collector settings", "phase1",
           ("metrics_on_service_gc", "p99_us"), "µs", 30),
    Figure("Phase 1 p50, metrics off", "phase1", ("metrics_off", "p50_us"), "µs"),
    Figure("Phase 1 p99, metrics off", "phase1", ("metrics_off", "p99_us"), "µs"),
    Figure("Phase 2 batch of 10 p50, metrics on", "phase2", ("p50_us",), "µs", 150),
    Figure("Phase 2 batch of 10 p99, metrics on", "phase2", ("p99_us",), "µs", 400),
    Figure("Phase 2 batch of 10 p50, metrics on, the service's collector settings",
           "phase2-service-gc", ("p50_us",), "µs", 150),
    Figure("Phase 2 batch of 10 p99, metrics on, the service's collector settings",
           "phase2-service-gc", ("p99_us",), "µs", 400),
    Figure("Phase 2 + book + intents ÷ Phase 2 alone, p50 (steady)", "book", ("ratio_p50",),
           "×", 1.25),
    Figure("Backtest Phase 2, two-year hourly file", "backtest",
           ("results", "phase2", "bars_per_sec"), "bars/s", 20_000, higher_is_better=True),
    Figure("Paper executor + trading states, added to a Phase 2 replay", "execution",
           ("added_pct",), "%", 10),
    Figure("Phase 3, 10 signals, 20 ms model, batch route, sync ÷ one request", "rl",
           ("ref_batch", "sync_ratio"), "×", 1.10),
    Figure("Phase 3, same, async ÷ one request", "rl", ("ref_batch", "async_ratio"), "×", 1.10),
    Figure("Phase 3, per-signal-only server, sync ÷ one request", "rl",
           ("tiny_single", "sync_ratio"), "×", 1.25),
    Figure("First decision ÷ warm, model answers", "rl", ("first", "answer", "ratio_median"),
           "×", 1.2),
    Figure("First decision ÷ warm, model refuses", "rl", ("first", "refuse", "ratio_median"),
           "×", 1.2),
    Figure("First decision ÷ warm, model hangs", "rl", ("first", "hang", "ratio_median"),
           "×", 1.2),
    Figure("Service p99, 300 req/s, synchronous=FULL", "service", ("latency_ms", "p99"), "ms", 10),
    Figure("Service p50, 300 req/s", "service", ("latency_ms", "p50"), "ms"),
)


def export_src(ref: str, into: Path) -> Path:
    """``ref``'s source and build files under ``into`` (returns the project folder)."""
    archive(ref, into, ["src", *[n for n in BUILD_FILES if _exists_at(ref, n)]])
    return into


def _exists_at(ref: str, name: str) -> bool:
    return subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{ref}:{name}"],
                          capture_output=True, check=False).returncode == 0


def copy_checkout(into: Path) -> Path:
    shutil.copytree(REPO / "src", into / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info"))
    for name in BUILD_FILES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, into / name)
        elif (REPO / name).exists():
            shutil.copy2(REPO / name, into / name)
    return into


def compile_tree(project: Path) -> Path | None:
    """Compile ``project`` in place with its setup.py; its src, or None if it cannot."""
    if not (project / "setup.py").exists() or shutil.which("cc") is None:
        return None
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
                   cwd=project, env={**os.environ, "HIMARI_L3_COMPILE": "1"},
                   capture_output=True, timeout=CHILD_TIMEOUT_SEC, check=False)
    built = list((project / "src" / "himari_l3").rglob("*.so"))
    return project / "src" if built else None


def measure(src: Path, workload: Workload) -> dict[str, Any] | None:
    """Run one workload in a fresh interpreter on ``src``; None if it fails there."""
    code = (f"import json, sys; sys.path.insert(0, {str(BENCH)!r}); "
            f"import {workload.module}; print(json.dumps({workload.module}.{workload.call}))")
    env = {**os.environ, "PYTHONPATH": str(src)}
    env.pop("HIMARI_L3_AUTH_TOKEN", None)
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=CHILD_TIMEOUT_SEC, check=False, env=env, cwd=REPO)
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        print(f"   {workload.module} failed on {src}: {proc.stderr.strip()[-300:]}",
              file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def pick(result: dict[str, Any] | None, path: tuple[str, ...]) -> float | None:
    value: Any = result
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, int | float) else None


def run_rounds(sides: dict[str, Path], workload: Workload,
               rounds: int) -> dict[str, list[dict[str, Any] | None]]:
    """``rounds`` interleaved runs of ``workload`` on each side (order alternates)."""
    names = list(sides)
    samples: dict[str, list[dict[str, Any] | None]] = {n: [] for n in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            samples[name].append(measure(sides[name], workload))
    return samples


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def rows_for(fig: Figure, samples: dict[str, list[dict[str, Any] | None]],
             builds: dict[str, tuple[str, str | None]]) -> list[dict[str, Any]]:
    """One row per build: this side's median, the previous side's, the median ratio."""
    rows = []
    for build, (this, prev) in builds.items():
        mine = [pick(s, fig.path) for s in samples[this]]
        theirs = [pick(s, fig.path) for s in samples[prev]] if prev else []
        ratios = [a / b for a, b in zip(mine, theirs, strict=False)
                  if a is not None and b is not None and b > 0]
        value = median([v for v in mine if v is not None])
        rows.append({"figure": fig.name, "build": build, "unit": fig.unit, "value": value,
                     "target": fig.target_text(), "met": fig.met(value),
                     "previous": median([v for v in theirs if v is not None]),
                     "ratio": median(ratios)})
    return rows


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def table(rows: list[dict[str, Any]], ref: str) -> str:
    out = [f"| figure | build | this commit | target | met | {ref} | ratio |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}×"
        out.append(f"| {r['figure']} | {r['build']} | {fmt(r['value'], r['unit'])} | "
                   f"{r['target']} | {r['met']} | {fmt(r['previous'], r['unit'])} | {ratio} |")
    return "\n".join(out)


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="HEAD~1", help="the commit to compare with")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--heavy-rounds", type=int, default=1)
    ap.add_argument("--only", nargs="*", choices=sorted(WORKLOADS), default=None)
    ap.add_argument("--no-compile", action="store_true", help="pure Python sides only")
    return ap.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    ref = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", args.ref],
                         check=True, capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="himari-runall-") as tmp:
        sides: dict[str, Path] = {"this": REPO / "src"}
        previous = export_src(ref, Path(tmp) / "previous")
        sides["previous"] = previous / "src"
        builds: dict[str, tuple[str, str | None]] = {"pure": ("this", "previous")}
        if not args.no_compile:
            print("== compiling this checkout and the previous commit (mypyc)", flush=True)
            compiled = compile_tree(copy_checkout(Path(tmp) / "compiled"))
            prev_compiled = compile_tree(export_src(ref, Path(tmp) / "previous-compiled"))
            if compiled is not None:
                sides["compiled"] = compiled
                if prev_compiled is not None:
                    sides["previous compiled"] = prev_compiled
                # Without a compiled build at the previous commit, compare with its pure
                # build (the row says so).
                builds["compiled" if prev_compiled else "compiled (ratio vs previous pure)"] = (
                    "compiled", "previous compiled" if prev_compiled else "previous")
        rows: list[dict[str, Any]] = []
        for name in args.only or list(WORKLOADS):
            workload = WORKLOADS[name]
            rounds = max(1, min(args.heavy_rounds if workload.heavy else args.rounds, 15))
            print(f"== {name}: {rounds} round(s) on {', '.join(sides)}", flush=True)
            samples = run_rounds(sides, workload, rounds)
            for fig in FIGURES:
                if fig.workload == name:
                    rows.extend(rows_for(fig, samples, builds))
    text = table(rows, ref)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary = {"date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
               "ref": ref, "rounds": args.rounds, "heavy_rounds": args.heavy_rounds,
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "platform": platform.platform(),
                           "load_avg": os.getloadavg()},
               "rows": rows, "table": text}
    (RESULTS / "all.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
