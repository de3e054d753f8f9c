"""Recorded Layer 2 output as JSONL: one ``TacticalSignal.to_dict()`` object per line.

Alignment to bars: a signal applies to the **first bar whose timestamp is >= its
timestamp_ns** (bar timestamps in ms are converted to ns). Bar timestamps are bar labels (the
open time in Binance files) and the replay acts at the bar's close, so a signal recorded at
wall time ``s`` is acted on at the close of a bar that opened at or after ``s`` — never before
it existed. Signals stamped after the last bar are dropped (and counted). If one strategy
sends several signals for a symbol that land on the same bar, the latest (by timestamp, then
file order) wins. Cascade indicators come from the bar proxies (:func:`cascade_proxies`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .._exceptions import ValidationError
from ..contracts import TacticalSignal
from .data import BacktestDataError, MarketData
from .signals import SignalTape, cascade_proxies

__all__ = ["read_signals_jsonl", "write_signals_jsonl"]


def write_signals_jsonl(path: str | Path, signals: Iterable[TacticalSignal]) -> int:
    """Write one JSON object per line (sorted keys); returns the number written."""
    n = 0
    with Path(path).open("w", encoding="utf-8") as fh:
        for s in signals:
            fh.write(json.dumps(s.to_dict(), sort_keys=True, allow_nan=False))
            fh.write("\n")
            n += 1
    return n


def _parse(path: Path) -> list[TacticalSignal]:
    out: list[TacticalSignal] = []
    try:
        fh = path.open(encoding="utf-8")
    except OSError as err:
        raise BacktestDataError(f"{path}: cannot open signals file ({err.strerror})") from err
    with fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as err:
                raise BacktestDataError(f"{path}: line {line_no}: not valid JSON "
                                        f"({err.msg} at column {err.colno})") from err
            try:
                signal = TacticalSignal.from_dict(data)
            except ValidationError as err:
                raise BacktestDataError(f"{path}: line {line_no}: {err}") from err
            if signal.timestamp_ns is None:
                # A recorded signal is placed on the bars by its timestamp: it needs one.
                raise BacktestDataError(f"{path}: line {line_no}: timestamp_ns is missing, "
                                        "expected an integer number of nanoseconds")
            out.append(signal)
    return out


def read_signals_jsonl(path: str | Path, market: MarketData) -> tuple[SignalTape, int]:
    """Read a JSONL file onto ``market``'s bars; returns the tape and the number of signals
    dropped because they came after the last bar."""
    p = Path(path)
    parsed = _parse(p)
    known = set(market.symbols)
    bar_ns = market.timestamp_ms.astype(np.int64) * 1_000_000
    n = market.n_bars
    # (bar, strategy, symbol) -> (timestamp, file order, signal); the latest wins.
    slots: dict[tuple[int, str, str], tuple[int, int, TacticalSignal]] = {}
    dropped = 0
    for order, s in enumerate(parsed):
        ts = s.timestamp_ns
        assert ts is not None  # _parse refuses unstamped signals
        if s.symbol not in known:
            raise BacktestDataError(
                f"{p}: signal {order + 1} has symbol {s.symbol!r}, which no prices file "
                f"provides (symbols: {', '.join(market.symbols)}); use --symbol to name them")
        t = int(np.searchsorted(bar_ns, ts, side="left"))
        if t >= n:
            dropped += 1
            continue
        key = (t, s.strategy_id, s.symbol)
        prev = slots.get(key)
        if prev is None or (ts, order) >= prev[:2]:
            slots[key] = (ts, order, s)
    per_bar: list[list[TacticalSignal]] = [[] for _ in range(n)]
    # Within a bar, signals keep their file order (as a live batch would have them).
    for (t, _sid, _sym), (_ts, _o, s) in sorted(slots.items(),
                                                 key=lambda kv: (kv[0][0], kv[1][1])):
        per_bar[t].append(s)
    cascades = [cascade_proxies(b) for b in market.bars]
    cascade = tuple({market.symbols[j]: cascades[j][t] for j in range(len(market.symbols))}
                    for t in range(n))
    return SignalTape(tuple(tuple(b) for b in per_bar), cascade, f"signals file {p}"), dropped
