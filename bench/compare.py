"""A/B the sizing core against another commit, interleaved, in one run.

    .venv/bin/python bench/compare.py                 # against HEAD~1
    .venv/bin/python bench/compare.py --ref e5266cf --rounds 7

The other commit's ``src/`` is exported into a temporary folder (``git archive``; nothing is
checked out in the repository). Each round runs the same workload (this checkout's
``bench_phase1`` / ``bench_phase2``) once against each tree, each in a fresh interpreter,
in alternating order (A B, B A, A B, ...), so a drift of the machine's speed hits both.
Reported per figure: the median over rounds of each side's p50/p99 and the median of the
per-round ratios A/B (A = this checkout). Bounded: at most 15 rounds, each child 300 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

# figure name -> (bench module, call, result keys)
FIGURES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "phase1 metrics off": ("bench_phase1", "run(n=10_000, seed=42)['metrics_off']",
                           ("p50_us", "p99_us")),
    "phase1 metrics on": ("bench_phase1", "run(n=10_000, seed=42)['metrics_on']",
                          ("p50_us", "p99_us")),
    "phase2 batch of 10": ("bench_phase2", "run(batches=2000, seed=0, write=False)",
                           ("p50_us", "p99_us")),
}


def archive(ref: str, into: Path, names: Sequence[str] = ("src",)) -> None:
    """Extract ``names`` (files or folders) as they are at commit ``ref`` under ``into``."""
    data = subprocess.run(["git", "-C", str(REPO), "archive", ref, *names], check=True,
                          capture_output=True, timeout=60).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")


def export_src(ref: str, into: Path) -> Path:
    """``ref``'s ``src/`` tree under ``into`` (returns the folder to put on PYTHONPATH)."""
    archive(ref, into)
    return into / "src"


def measure(src: Path, module: str, call: str) -> dict[str, Any]:
    """Run one workload in a fresh interpreter importing ``himari_l3`` from ``src``."""
    code = (f"import json, sys; sys.path.insert(0, {str(BENCH)!r}); "
            f"sys.path.insert(0, {str(src)!r}); import {module}; "
            f"print(json.dumps({module}.{call}))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, timeout=300).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def compare(ref: str, rounds: int, figures: list[str]) -> dict[str, Any]:
    """Interleaved A/B rounds; returns {figure: {key: {"a", "b", "ratio"}}}."""
    rounds = max(1, min(rounds, 15))
    with tempfile.TemporaryDirectory(prefix="himari-ab-") as tmp:
        sides = {"a": REPO / "src", "b": export_src(ref, Path(tmp))}
        out: dict[str, Any] = {}
        for fig in figures:
            module, call, keys = FIGURES[fig]
            samples: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
            for r in range(rounds):
                for side in (("a", "b") if r % 2 == 0 else ("b", "a")):
                    samples[side].append(measure(sides[side], module, call))
            out[fig] = {k: {
                "a": statistics.median(s[k] for s in samples["a"]),
                "b": statistics.median(s[k] for s in samples["b"]),
                "ratio": statistics.median(x[k] / y[k] for x, y in zip(
                    samples["a"], samples["b"], strict=True)),
            } for k in keys}
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="HEAD~1", help="the commit to compare against (B)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--figures", default=",".join(FIGURES),
                    help=f"comma-separated subset of: {', '.join(FIGURES)}")
    args = ap.parse_args(argv)
    figures = [f.strip() for f in args.figures.split(",") if f.strip()]
    unknown = sorted(set(figures) - set(FIGURES))
    if unknown:
        ap.error(f"unknown figure(s) {unknown}")
    result = compare(args.ref, args.rounds, figures)
    print(f"A = this checkout, B = {args.ref}; medians over {args.rounds} interleaved rounds")
    print(f"{'figure':<24}{'key':<8}{'A':>10}{'B':>10}{'A/B':>8}")
    for fig, keys in result.items():
        for k, v in keys.items():
            print(f"{fig:<24}{k:<8}{v['a']:>10.1f}{v['b']:>10.1f}{v['ratio']:>8.3f}")
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "compare.json").write_text(
        json.dumps({"ref": args.ref, "rounds": args.rounds, "figures": result}, indent=2)
        + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
