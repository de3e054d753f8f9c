"""``himari-l3 backtest``: argument parsing, progress bar, exit codes.

Exit codes: 0 done; 2 bad arguments, a malformed prices/signals/config/markets file, or a
phase whose module is not importable yet (the message says which).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import TextIO

from .._exceptions import ConfigError, ValidationError
from ..config.loader import load_config
from .data import BacktestDataError
from .runner import run_backtest

__all__ = ["ProgressBar", "build_parser", "main"]


class ProgressBar:
    """A one-line stderr progress bar per stage; silent when ``enabled`` is false."""

    def __init__(self, stream: TextIO, enabled: bool, width: int = 30,
                 min_interval: float = 0.2) -> None:
        self.stream = stream
        self.enabled = enabled
        self.width = width
        self.min_interval = min_interval
        self._label: str | None = None
        self._t0 = 0.0
        self._last = 0.0

    def __call__(self, label: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if label != self._label:
            self.close()
            self._label, self._t0, self._last = label, now, 0.0
        if done < total and now - self._last < self.min_interval:
            return
        self._last = now
        frac = done / total if total else 1.0
        filled = int(self.width * frac)
        rate = done / (now - self._t0) if now > self._t0 else 0.0
        self.stream.write(f"\r{label:<24} [{'#' * filled}{'-' * (self.width - filled)}] "
                          f"{frac:6.1%} {done}/{total} bars {rate:,.0f} bars/s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._label is not None:
            self.stream.write("\n")
            self.stream.flush()
        self._label = None


def _rl(value: str) -> str:
    v = value.strip()
    if v.lower() in ("off", "mock"):
        return v.lower()
    if v.startswith(("http://", "https://")):
        return v
    raise argparse.ArgumentTypeError(f"--rl was {value!r}, expected off, mock or an "
                                     "http(s):// URL of the RL endpoint")


def build_parser(prog: str = "himari-l3 backtest") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Replay OHLCV bars through a Layer 3 sizing phase and report "
        "risk-adjusted performance, an ablation of sizing policies and a significance check.")
    p.add_argument("--prices", action="append", required=True, metavar="CSV",
                   help="OHLCV CSV (timestamp ms, open, high, low, close, volume); repeat for "
                   "several symbols (aligned on common timestamps)")
    p.add_argument("--signals", metavar="JSONL", default=None,
                   help="recorded Layer 2 signals, one TacticalSignal JSON per line (default: "
                   "the built-in reference generator)")
    p.add_argument("--phase", type=int, choices=(1, 2, 3), default=1,
                   help="sizing phase of the main run (default 1)")
    p.add_argument("--rl", type=_rl, default="off", metavar="off|mock|URL",
                   help="phase 3 RL model: off, mock, or the real endpoint URL (default off)")
    p.add_argument("--fees-bps", type=float, default=5.0,
                   help="fee in bps of each fill's notional (default 5): the fill model's "
                   "execution.fill_model.fee_bps")
    p.add_argument("--slippage-bps", type=float, default=2.0,
                   help="fixed adverse slippage in bps (default 2), before impact: the fill "
                   "model's execution.fill_model.slippage_bps")
    p.add_argument("--config", default=None, metavar="YAML",
                   help="Layer 3 config to run under (sizing, limits, book, execution and "
                   "its fill model, trading states; default: the defaults)")
    p.add_argument("--markets", default=None, metavar="FILE",
                   help="instrument rules, a ccxt markets JSON or a YAML table (default: the "
                   "config's execution.markets_file; none: unconstrained)")
    p.add_argument("--resume-after-hours", type=float, default=24.0, metavar="H",
                   help="the replay's operator resumes a halted or reduce-only portfolio or "
                   "symbol H hours later (default 24)")
    p.add_argument("--never-resume", action="store_true",
                   help="no operator: an automatic halt lasts to the end of the replay")
    p.add_argument("--out", default="backtest_out", metavar="DIR",
                   help="output directory (default ./backtest_out)")
    p.add_argument("--symbol", action="append", default=None,
                   help="symbol for the matching --prices (default from the file name: "
                   "btc_usdt_1h.csv -> BTC/USDT); give one per --prices")
    p.add_argument("--shuffles", type=int, default=20, metavar="N",
                   help="shuffled-signal replays for the significance check (default 20; "
                   "0 skips it)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffles and mock RL")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (it is also off when stderr is not a terminal)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the backtest CLI; returns the exit code (argparse's exits become return codes:
    ``--help`` 0, usage errors 2)."""
    try:
        return _main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rl != "off" and args.phase != 3:
        parser.error(f"--rl {args.rl} needs --phase 3 (only phase 3 uses the RL model)")
    if args.shuffles < 0:
        parser.error(f"--shuffles was {args.shuffles}, expected >= 0")
    if args.symbol and len(args.symbol) != len(args.prices):
        parser.error(f"{len(args.symbol)} --symbol for {len(args.prices)} --prices; give one "
                     "--symbol per --prices, in the same order")
    for flag, bps in (("--fees-bps", args.fees_bps), ("--slippage-bps", args.slippage_bps)):
        if not 0.0 <= bps <= 1_000.0:
            parser.error(f"{flag} was {bps}, expected 0 <= {flag} <= 1000")
    if not args.resume_after_hours > 0:
        parser.error(f"--resume-after-hours was {args.resume_after_hours}, expected > 0 "
                     "(--never-resume for no operator)")
    bar = ProgressBar(sys.stderr, enabled=not args.no_progress and sys.stderr.isatty())
    try:
        config = None if args.config is None else load_config(args.config)
        summary = run_backtest(
            args.prices, out_dir=args.out, signals=args.signals, phase=args.phase,
            rl=args.rl, fees_bps=args.fees_bps, slippage_bps=args.slippage_bps,
            symbols=args.symbol, shuffles=args.shuffles, seed=args.seed, progress=bar,
            config=config, markets_file=args.markets,
            resume_after_hours=None if args.never_resume else args.resume_after_hours)
    except (BacktestDataError, ValidationError, ConfigError) as err:
        bar.close()
        print(f"himari-l3 backtest: error: {err}", file=sys.stderr)
        return 2
    bar.close()
    m = summary["metrics"]
    sig = summary["significance"]
    p_value = f"{sig['p_value']:.3f}" if sig else "n/a"
    ex = summary["execution"]
    print(f"{summary['policy']}: total return {m['total_return']:+.2%}, Sharpe "
          f"{_num(m['sharpe'])}, max DD {m['max_drawdown']:.2%}, p-value {p_value}, "
          f"{ex['fills']} fills, fees {ex['fees_usd']:,.2f} + slippage "
          f"{ex['slippage_usd']:,.2f} USD, {ex['trading_state_transitions']} trading-state "
          f"transitions, {summary['performance']['bars_per_sec']:,.0f} bars/s -> {args.out}")
    return 0


def _num(x: float) -> str:
    return f"{x:.2f}" if math.isfinite(x) else "n/a"
