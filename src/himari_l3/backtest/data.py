"""OHLCV bars for the backtest: loading with validation, multi-symbol alignment, bar frequency.

File layout (that of ``../shared/data/btc_usdt_1h.csv``): a header row naming at least
``timestamp, open, high, low, close, volume`` (any order; other columns such as ``datetime`` are
ignored), then one bar per row. ``timestamp`` is the bar's label in integer milliseconds since
the epoch (Binance's open time); the replay treats everything in a bar as known at its close.

Validation, each failure naming the file, the 1-based line and the column:
timestamps integer, strictly increasing (sorted and unique); open/high/low/close finite and
> 0; volume finite and >= 0; high >= low.

The symbol comes from the file name unless given: ``btc_usdt_1h.csv`` -> ``BTC/USDT`` (a
trailing interval token such as ``1h``/``15m``/``1d`` is dropped, the first two ``_``/``-``
separated parts become BASE/QUOTE).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .._exceptions import Layer3Error

__all__ = [
    "MILLISECONDS_PER_YEAR",
    "REQUIRED_COLUMNS",
    "BacktestDataError",
    "Bars",
    "MarketData",
    "align_bars",
    "infer_periods_per_year",
    "load_bars",
    "symbol_from_path",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

REQUIRED_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
# Crypto trades 24/7: a year is 365 days of bars (8760 hourly bars, hence sqrt(8760)).
MILLISECONDS_PER_YEAR = 365 * 24 * 3600 * 1000
_INTERVAL_TOKEN = re.compile(r"^\d+(s|m|min|h|d|w)$", re.IGNORECASE)


class BacktestDataError(Layer3Error, ValueError):
    """A prices or signals file is malformed (the message names file, row and column)."""


@dataclass(frozen=True, slots=True, eq=False)
class Bars:
    """Validated OHLCV bars of one symbol (arrays are read-only)."""

    symbol: str
    source: str
    timestamp_ms: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    def __len__(self) -> int:
        return len(self.timestamp_ms)

    def take(self, index: npt.NDArray[np.intp]) -> Bars:
        """The bars at ``index`` (used for alignment)."""
        return Bars(self.symbol, self.source, _ro_i(self.timestamp_ms[index]),
                    _ro_f(self.open[index]), _ro_f(self.high[index]), _ro_f(self.low[index]),
                    _ro_f(self.close[index]), _ro_f(self.volume[index]))


@dataclass(frozen=True, slots=True, eq=False)
class MarketData:
    """Bars of one or more symbols on common timestamps (``close[t, j]`` is symbol j)."""

    symbols: tuple[str, ...]
    bars: tuple[Bars, ...]
    timestamp_ms: IntArray
    close: FloatArray

    @property
    def n_bars(self) -> int:
        return len(self.timestamp_ms)

    @property
    def periods_per_year(self) -> float:
        return infer_periods_per_year(self.timestamp_ms)


def _ro_f(a: npt.ArrayLike) -> FloatArray:
    """A read-only float64 copy (bars are shared between replays and must not change)."""
    out = np.array(a, dtype=np.float64)
    out.setflags(write=False)
    return out


def _ro_i(a: npt.ArrayLike) -> IntArray:
    out = np.array(a, dtype=np.int64)
    out.setflags(write=False)
    return out


def symbol_from_path(path: str | Path) -> str:
    """``btc_usdt_1h.csv`` -> ``BTC/USDT``; ``ETH-USDT.csv`` -> ``ETH/USDT``;
    ``sol.csv`` -> ``SOL``."""
    parts = [p for p in re.split(r"[_\-\s]+", Path(path).stem) if p]
    if len(parts) > 1 and _INTERVAL_TOKEN.match(parts[-1]):
        parts = parts[:-1]
    if not parts:
        raise BacktestDataError(f"{path}: cannot derive a symbol from the file name; "
                                "pass --symbol")
    return "/".join(parts[:2]).upper() if len(parts) >= 2 else parts[0].upper()


def load_bars(path: str | Path, symbol: str | None = None) -> Bars:
    """Read and validate one OHLCV CSV file; raises :class:`BacktestDataError`."""
    p = Path(path)
    sym = symbol if symbol else symbol_from_path(p)
    try:
        fh = p.open(newline="", encoding="utf-8")
    except OSError as err:
        raise BacktestDataError(f"{p}: cannot open prices file ({err.strerror})") from err
    with fh:
        reader = csv.reader(fh)
        names, idx = _header(p, next(reader, None))
        ts: list[int] = []
        cols: list[list[float]] = [[], [], [], [], []]
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            _parse_row(p, line_no, row, len(names), idx, ts, cols)
    if len(ts) < 3:
        raise BacktestDataError(f"{p}: {len(ts)} bar(s), need at least 3")
    return Bars(sym, str(p), _ro_i(ts), _ro_f(cols[0]), _ro_f(cols[1]), _ro_f(cols[2]),
                _ro_f(cols[3]), _ro_f(cols[4]))


def _header(p: Path, header: list[str] | None) -> tuple[list[str], list[int]]:
    """The header's column names and the index of each required column."""
    if header is None:
        raise BacktestDataError(f"{p}: empty file, expected a header row with columns "
                                f"{', '.join(REQUIRED_COLUMNS)}")
    names = [h.strip().lower() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise BacktestDataError(f"{p}: line 1: missing column(s) {', '.join(missing)}; "
                                f"header was {header}")
    return names, [names.index(c) for c in REQUIRED_COLUMNS]


def _parse_row(p: Path, line_no: int, row: list[str], width: int, idx: list[int],
               ts: list[int], cols: list[list[float]]) -> None:
    """Validate one row and append it to ``ts`` / ``cols`` (sorted, unique timestamps;
    high >= low)."""
    if len(row) < width:
        raise BacktestDataError(f"{p}: line {line_no}: expected {width} columns, got "
                                f"{len(row)}")
    t = _parse_timestamp(p, line_no, row[idx[0]])
    prev = ts[-1] if ts else -1
    if t <= prev:
        what = "duplicate" if t == prev else "out-of-order"
        raise BacktestDataError(
            f"{p}: line {line_no}, column 'timestamp': {what} timestamp {t} (previous "
            f"{prev}); timestamps must be sorted and unique")
    values = [_parse_value(p, line_no, col, row[idx[k + 1]])
              for k, col in enumerate(REQUIRED_COLUMNS[1:])]
    if values[1] < values[2]:
        raise BacktestDataError(
            f"{p}: line {line_no}, column 'high': high {values[1]!r} is below low "
            f"{values[2]!r}")
    ts.append(t)
    for k, v in enumerate(values):
        cols[k].append(v)


def _parse_timestamp(p: Path, line_no: int, raw: str) -> int:
    s = raw.strip()
    try:
        value = int(s)
    except ValueError:
        try:
            f = float(s)
        except ValueError:
            f = math.nan
        if not (math.isfinite(f) and f == int(f)):
            raise BacktestDataError(
                f"{p}: line {line_no}, column 'timestamp': {raw!r} is not an integer "
                "number of milliseconds") from None
        value = int(f)
    if value < 0:
        raise BacktestDataError(f"{p}: line {line_no}, column 'timestamp': {value} is negative")
    return value


def _parse_value(p: Path, line_no: int, col: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    ok = math.isfinite(value) and (value >= 0.0 if col == "volume" else value > 0.0)
    if not ok:
        expected = "a finite number >= 0" if col == "volume" else "a finite number > 0"
        raise BacktestDataError(
            f"{p}: line {line_no}, column '{col}': value {raw.strip()!r}, expected {expected}")
    return value


def align_bars(bars: Sequence[Bars]) -> MarketData:
    """Keep the timestamps every symbol has (inner join); raise if symbols repeat or no
    timestamp is common to all."""
    if not bars:
        raise BacktestDataError("no prices file given")
    symbols = tuple(b.symbol for b in bars)
    dupes = sorted({s for s in symbols if symbols.count(s) > 1})
    if dupes:
        raise BacktestDataError(f"symbol(s) {', '.join(dupes)} given by more than one prices "
                                "file; pass --symbol once per --prices to disambiguate")
    common = bars[0].timestamp_ms
    for b in bars[1:]:
        common = np.intersect1d(common, b.timestamp_ms, assume_unique=True)
    if len(common) < 3:
        files = ", ".join(b.source for b in bars)
        raise BacktestDataError(f"{files}: only {len(common)} timestamp(s) common to all "
                                "files, need at least 3")
    aligned = tuple(b if len(b) == len(common) else
                    b.take(np.searchsorted(b.timestamp_ms, common)) for b in bars)
    close = np.column_stack([b.close for b in aligned])
    return MarketData(symbols, aligned, _ro_i(common), _ro_f(close))


def infer_periods_per_year(timestamp_ms: npt.NDArray[np.int64]) -> float:
    """Bars per 365-day year from the median spacing (hourly -> 8760, daily -> 365)."""
    if len(timestamp_ms) < 2:
        raise BacktestDataError("need at least 2 timestamps to infer the bar frequency")
    step = float(np.median(np.diff(timestamp_ms)))
    if step <= 0:
        raise BacktestDataError(f"median bar spacing was {step} ms, expected > 0")
    return MILLISECONDS_PER_YEAR / step
