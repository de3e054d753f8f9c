"""One backtest run end to end: load -> signals -> main replay -> ablation -> significance
-> outputs. The entry point the CLI (``himari-l3 backtest``) and tests call."""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .data import MarketData, align_bars, load_bars
from .engine import Replay, replay
from .policies import POLICY_NAMES, make_policy
from .report import write_equity_csv, write_html, write_plots, write_summary
from .signal_io import read_signals_jsonl
from .signals import SignalTape, reference_signals
from .stats import permutation_p_value

__all__ = ["ProgressHook", "run_backtest"]

SUMMARY_VERSION = 1
# progress(label, done, total): called every few hundred bars of every replay.
ProgressHook = Callable[[str, int, int], None]


def _phase_policy(phase: int) -> str:
    if phase not in (1, 2, 3):
        raise ValueError(f"phase was {phase!r}, expected 1, 2 or 3")
    return f"phase{phase}"


def run_backtest(  # noqa: PLR0913 - the library twin of the CLI's options (keyword-only)
    prices: Sequence[str | Path],
    *,
    out_dir: str | Path,
    signals: str | Path | None = None,
    phase: int = 1,
    rl: str = "off",
    fees_bps: float = 5.0,
    slippage_bps: float = 2.0,
    symbols: Sequence[str] | None = None,
    shuffles: int = 20,
    seed: int = 0,
    initial_capital: float = 100_000.0,
    ablation: bool = True,
    progress: ProgressHook | None = None,
) -> dict[str, Any]:
    """Replay ``prices`` through ``phase``; write the outputs into ``out_dir``; return the
    summary (also written as ``summary.json``). Raises ``BacktestDataError`` on bad files."""
    policy_name = _phase_policy(phase)
    _check(rl, phase, shuffles, symbols, prices)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    market = align_bars([load_bars(p, symbols[i] if symbols else None)
                         for i, p in enumerate(prices)])
    dropped = 0
    if signals is None:
        tape = reference_signals(market)
    else:
        tape, dropped = read_signals_jsonl(signals, market)
    runner = _Runner(market, initial_capital, fees_bps, slippage_bps, seed, progress)
    main = runner.run(policy_name, tape, f"{policy_name} (main)", rl)
    rows, curves = (_ablation(runner, tape, main, policy_name, rl) if ablation
                    else ([], [main]))
    significance = (_significance(runner, tape, main, policy_name, rl, shuffles, seed)
                    if shuffles > 0 else None)
    summary = _summary(main, tape, _inputs(prices, market, tape, dropped, {
        "phase": phase, "rl": rl, "fees_bps": fees_bps, "slippage_bps": slippage_bps,
        "initial_capital": initial_capital, "shuffles": shuffles, "seed": seed}),
        rows, significance)
    write_equity_csv(out / "equity.csv", main)
    plots = write_plots(out, main, curves)
    summary["performance"]["total_elapsed_sec"] = time.perf_counter() - started
    write_html(out / "report.html", summary, plots)
    write_summary(out / "summary.json", summary)
    return summary


def _summary(main: Replay, tape: SignalTape, inputs: dict[str, Any],
             rows: list[dict[str, Any]],
             significance: dict[str, Any] | None) -> dict[str, Any]:
    """The run's summary (``summary.json``; docs/backtest.md describes every key)."""
    return {
        "version": SUMMARY_VERSION,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "policy": main.policy,
        "inputs": inputs,
        "signal_counts": tape.counts(),
        "metrics": main.metrics(),
        "performance": {"bars_per_sec": main.bars_per_sec, "elapsed_sec": main.elapsed_sec,
                        "total_elapsed_sec": math.nan, "machine": platform.machine(),
                        "python": platform.python_version()},
        "ablation": rows,
        "significance": significance,
        "learned": main.learned,
        "files": ["summary.json", "equity.csv", "equity.png", "drawdown.png", "exposure.png",
                  "report.html"],
    }


def _check(rl: str, phase: int, shuffles: int, symbols: Sequence[str] | None,
           prices: Sequence[str | Path]) -> None:
    if rl != "off" and phase != 3:
        raise ValueError(f"rl was {rl!r}; the RL model is only used by phase 3")
    if shuffles < 0:
        raise ValueError(f"shuffles was {shuffles!r}, expected >= 0")
    if symbols and len(symbols) != len(prices):
        raise ValueError(f"{len(symbols)} symbol(s) for {len(prices)} prices file(s); give "
                         "one --symbol per --prices, in the same order")


class _Runner:
    """Replays a fresh policy over one market with fixed costs and progress reporting."""

    def __init__(self, market: MarketData, initial_capital: float, fees_bps: float,
                 slippage_bps: float, seed: int, progress: ProgressHook | None) -> None:
        self.market = market
        self.initial_capital = initial_capital
        self.fees_bps = fees_bps
        self.slippage_bps = slippage_bps
        self.seed = seed
        self.progress = progress

    def run(self, name: str, tape: SignalTape, label: str, rl_mode: str) -> Replay:
        market = self.market
        pol = make_policy(name, self.initial_capital, rl=rl_mode, seed=self.seed,
                           periods_per_year=market.periods_per_year)
        progress = self.progress
        hook = None
        if progress is not None:
            def hook(done: int) -> None:
                progress(label, done, market.n_bars)
        try:
            return replay(market, tape, pol, initial_capital=self.initial_capital,
                          fees_bps=self.fees_bps, slippage_bps=self.slippage_bps,
                          progress=hook)
        finally:
            pol.close()


def _ablation(runner: _Runner, tape: SignalTape, main: Replay, policy_name: str,
              rl: str) -> tuple[list[dict[str, Any]], list[Replay]]:
    """Every policy on the same signals (the main replay reused where it is one of them)."""
    rows: list[dict[str, Any]] = []
    curves: list[Replay] = [main]
    for name in POLICY_NAMES:
        rl_mode = "mock" if name == "phase3" else "off"
        if name == policy_name and (name != "phase3" or rl == "mock"):
            rep = main
        else:
            rep = runner.run(name, tape, f"ablation {name}", rl_mode)
            curves.append(rep)
        rows.append({"policy": rep.policy, "status": "ok", "metrics": rep.metrics(),
                     "bars_per_sec": rep.bars_per_sec, "elapsed_sec": rep.elapsed_sec})
    return rows, curves


def _significance(runner: _Runner, tape: SignalTape, main: Replay, policy_name: str, rl: str,
                  shuffles: int, seed: int) -> dict[str, Any]:
    """The shuffled-signal baseline: the same policy on signal sets permuted across bars."""
    actual = main.metrics()["sharpe"]
    rng = np.random.default_rng(seed)
    sharpes = []
    for k in range(shuffles):
        rep = runner.run(policy_name, tape.permuted(rng), f"shuffle {k + 1}/{shuffles}", rl)
        sharpes.append(float(rep.metrics()["sharpe"]))
    finite = [s for s in sharpes if math.isfinite(s)]
    return {
        "method": "signal sets permuted across bars (prices and cascade fixed), same "
                  "policy replayed from scratch; p = (1 + #(shuffled >= actual)) / (N + 1)",
        "n_shuffles": shuffles, "seed": seed, "actual_sharpe": actual,
        "shuffled_sharpes": sharpes,
        "mean_shuffled_sharpe": float(np.mean(finite)) if finite else math.nan,
        "std_shuffled_sharpe": float(np.std(finite, ddof=1)) if len(finite) > 1
        else math.nan,
        "p_value": permutation_p_value(actual, sharpes),
    }


def _inputs(prices: Sequence[str | Path], market: MarketData, tape: SignalTape, dropped: int,
            options: dict[str, Any]) -> dict[str, Any]:
    """What the run was given (``options``: the run's scalar options, recorded as is)."""
    ts = market.timestamp_ms
    step = np.diff(ts)
    return {
        "prices": [str(p) for p in prices], "symbols": list(market.symbols),
        "signals": tape.source, "signals_dropped_after_last_bar": dropped,
        "phase": options["phase"], "rl": options["rl"], "fees_bps": options["fees_bps"],
        "slippage_bps": options["slippage_bps"], "initial_capital": options["initial_capital"],
        "bars": market.n_bars,
        "start": datetime.fromtimestamp(int(ts[0]) / 1000, UTC).isoformat(),
        "end": datetime.fromtimestamp(int(ts[-1]) / 1000, UTC).isoformat(),
        "bar_interval_sec": float(np.median(step)) / 1000.0,
        "irregular_intervals": int(np.count_nonzero(step != np.median(step))),
        "periods_per_year": market.periods_per_year, "shuffles": options["shuffles"],
        "seed": options["seed"],
    }
