"""One backtest run end to end: load -> signals -> main replay -> ablation -> significance
-> outputs. The entry point the CLI (``himari-l3 backtest``) and tests call."""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..config.markets import load_markets
from ..config.schema import Layer3Config
from .data import MarketData, align_bars, load_bars
from .engine import ExecutionSetup, Replay, replay
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
    config: Layer3Config | None = None,
    markets_file: str | Path | None = None,
    resume_after_hours: float | None = 24.0,
) -> dict[str, Any]:
    """Replay ``prices`` through ``phase``; write the outputs into ``out_dir``; return the
    summary (also written as ``summary.json``). Raises ``BacktestDataError`` on bad files.

    ``config``: the Layer 3 config the replay runs under (sizing, limits, book, execution,
    fill model, trading states; default: the defaults), with ``fees_bps`` and
    ``slippage_bps`` in its fill model; ``markets_file``: the instrument rules (default the
    config's ``execution.markets_file``; none: unconstrained); ``resume_after_hours``: the
    replay's stand-in operator (``execution.py``; None: a trip is never lifted)."""
    policy_name = _phase_policy(phase)
    _check(rl, phase, shuffles, symbols, prices)
    setup = _setup(initial_capital, fees_bps, slippage_bps, config, markets_file,
                   resume_after_hours)
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
    runner = _Runner(market, initial_capital, setup, seed, progress)
    main = runner.run(policy_name, tape, f"{policy_name} (main)", rl)
    rows, curves = (_ablation(runner, tape, main, policy_name, rl) if ablation
                    else ([], [main]))
    significance = (_significance(runner, tape, main, policy_name, rl, shuffles, seed)
                    if shuffles > 0 else None)
    summary = _summary(main, tape, _inputs(prices, market, tape, dropped, {
        "phase": phase, "rl": rl, "fees_bps": fees_bps, "slippage_bps": slippage_bps,
        "initial_capital": initial_capital, "shuffles": shuffles, "seed": seed,
        "markets_file": None if setup.markets_file is None else str(setup.markets_file),
        "resume_after_hours": resume_after_hours}), rows, significance)
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
        "execution": _execution(main),
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
    """Replays a fresh policy over one market through one execution setup, with progress
    reporting."""

    def __init__(self, market: MarketData, initial_capital: float, setup: _Setup, seed: int,
                 progress: ProgressHook | None) -> None:
        self.market = market
        self.initial_capital = initial_capital
        self.setup = setup
        self.seed = seed
        self.progress = progress

    def run(self, name: str, tape: SignalTape, label: str, rl_mode: str) -> Replay:
        market = self.market
        pol = make_policy(name, self.initial_capital, rl=rl_mode, seed=self.seed,
                          periods_per_year=market.periods_per_year,
                          config=self.setup.execution.config)
        progress = self.progress
        hook = None
        if progress is not None:
            def hook(done: int) -> None:
                progress(label, done, market.n_bars)
        try:
            return replay(market, tape, pol, initial_capital=self.initial_capital,
                          execution=self.setup.execution, progress=hook)
        finally:
            pol.close()


class _Setup(NamedTuple):
    execution: ExecutionSetup
    markets_file: Path | None


def _setup(initial_capital: float, fees_bps: float, slippage_bps: float,
           config: Layer3Config | None, markets_file: str | Path | None,
           resume_after_hours: float | None) -> _Setup:
    """The replay's execution: the config with the run's costs, the instrument rules."""
    for name, bps in (("fees_bps", fees_bps), ("slippage_bps", slippage_bps)):
        if not (math.isfinite(bps) and 0.0 <= bps <= 1_000.0):
            raise ValueError(f"{name} was {bps!r}, expected 0 <= {name} <= 1000")
    if resume_after_hours is not None and not (math.isfinite(resume_after_hours)
                                               and resume_after_hours > 0):
        raise ValueError(f"resume_after_hours was {resume_after_hours!r}, expected > 0 "
                         "(or None: never)")
    cfg = config if config is not None else Layer3Config()
    path = Path(markets_file) if markets_file is not None else (
        Path(cfg.execution.markets_file) if cfg.execution.markets_file else None)
    markets = load_markets(cfg.execution.model_copy(
        update={"markets_file": None if path is None else str(path)}))
    return _Setup(ExecutionSetup.from_costs(initial_capital, fees_bps, slippage_bps, cfg,
                                            markets=markets,
                                            resume_after_hours=resume_after_hours), path)


def _execution(rep: Replay) -> dict[str, Any]:
    """What trading through the book cost and did (``summary.json``'s ``execution``)."""
    gross = float(np.sum(rep.traded_usd))
    return {**rep.execution, "fills": int(np.sum(rep.fills)), "traded_usd": gross,
            "fees_usd": float(np.sum(rep.fees)), "slippage_usd": float(np.sum(rep.slippage)),
            "cost_bps_of_traded": 1e4 * float(np.sum(rep.costs)) / gross if gross else 0.0,
            "bars_reducing": int(np.count_nonzero(rep.trading_state == 1)),
            "bars_halted": int(np.count_nonzero(rep.trading_state == 2))}


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
        "seed": options["seed"], "markets_file": options["markets_file"],
        "resume_after_hours": options["resume_after_hours"],
    }
