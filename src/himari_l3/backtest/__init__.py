"""Offline evaluation: replay OHLCV history through a sizing phase (docs/backtest.md).

``run_backtest(...)`` is the library entry point, ``main(argv)`` the CLI
(``himari-l3 backtest``); the rest is exported for tests and notebooks.
"""

from .cli import main
from .data import BacktestDataError, Bars, MarketData, align_bars, load_bars, symbol_from_path
from .engine import Replay, SizingPolicy, replay
from .policies import (
    POLICY_NAMES,
    EnsemblePolicy,
    FixedFractionPolicy,
    Phase1Policy,
    Phase2Policy,
    Phase3Policy,
    make_policy,
)
from .runner import run_backtest
from .signal_io import read_signals_jsonl, write_signals_jsonl
from .signals import SignalTape, reference_signals

__all__ = [
    "POLICY_NAMES",
    "BacktestDataError",
    "Bars",
    "EnsemblePolicy",
    "FixedFractionPolicy",
    "MarketData",
    "Phase1Policy",
    "Phase2Policy",
    "Phase3Policy",
    "Replay",
    "SignalTape",
    "SizingPolicy",
    "align_bars",
    "load_bars",
    "main",
    "make_policy",
    "read_signals_jsonl",
    "reference_signals",
    "replay",
    "run_backtest",
    "symbol_from_path",
    "write_signals_jsonl",
]
