"""Prices CSV loading: validation errors name file, line and column; alignment; symbols."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from himari_l3.backtest.data import (
    BacktestDataError,
    align_bars,
    load_bars,
    symbol_from_path,
)

HEADER = "timestamp,open,high,low,close,volume,datetime\n"
T0 = 1_705_017_600_000
H = 3_600_000


def _row(i: int, close: float = 100.0, ts: int | None = None) -> str:
    t = T0 + i * H if ts is None else ts
    return f"{t},{close},{close * 1.01},{close * 0.99},{close},10.5,x\n"


def _write(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text(header + "".join(rows), encoding="utf-8")
    return path


def test_loads_valid_file_and_ignores_extra_columns(tmp_path: Path) -> None:
    """A valid file loads into read-only arrays; the datetime column is ignored."""
    b = load_bars(_write(tmp_path / "eth_usdt_1h.csv", [_row(i, 100.0 + i) for i in range(5)]))
    assert b.symbol == "ETH/USDT"
    assert len(b) == 5
    assert b.close.tolist() == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert b.timestamp_ms.dtype == np.int64
    assert not b.close.flags.writeable


@pytest.mark.parametrize(("rows", "needle"), [
    ([_row(0), _row(1), _row(1)], "line 4, column 'timestamp': duplicate"),
    ([_row(0), _row(2), _row(1)], "line 4, column 'timestamp': out-of-order"),
    ([_row(0), "12.5,1,2,0.5,1,1,x\n", _row(2)], "line 3, column 'timestamp': '12.5'"),
    ([_row(0), _row(1, float("nan")), _row(2)], "line 3, column 'open'"),
    ([_row(0), _row(1), _row(2, -5.0)], "line 4, column 'open'"),
    ([_row(0), f"{T0 + H},1,2,3,inf,1,x\n", _row(2)], "line 3, column 'close'"),
    ([_row(0), f"{T0 + H},1,2,0.5,1,-1,x\n", _row(2)], "line 3, column 'volume'"),
    ([_row(0), f"{T0 + H},1,0.5,2,1,1,x\n", _row(2)], "line 3, column 'high'"),
    ([_row(0), f"{T0 + H},1,2\n", _row(2)], "line 3: expected 7 columns"),
    ([_row(0), _row(1)], "need at least 3"),
])
def test_validation_errors_name_file_line_and_column(tmp_path: Path, rows: list[str],
                                                     needle: str) -> None:
    """Each malformed value is reported with the file, the line and the column."""
    path = _write(tmp_path / "btc_usdt_1h.csv", rows)
    with pytest.raises(BacktestDataError) as info:
        load_bars(path)
    assert str(path) in str(info.value)
    assert needle in str(info.value)


def test_missing_column_and_missing_file(tmp_path: Path) -> None:
    """A missing column or file is a BacktestDataError, not a traceback."""
    path = _write(tmp_path / "a.csv", ["1,2,3,4,5\n"], header="timestamp,open,high,low,close\n")
    with pytest.raises(BacktestDataError, match="missing column"):
        load_bars(path)
    with pytest.raises(BacktestDataError, match="cannot open"):
        load_bars(tmp_path / "nope.csv")


@pytest.mark.parametrize(("name", "symbol"), [
    ("btc_usdt_1h.csv", "BTC/USDT"), ("ETH-USDT.csv", "ETH/USDT"),
    ("sol_usdc_15m.csv", "SOL/USDC"), ("doge.csv", "DOGE"), ("btcusdt_1d.csv", "BTCUSDT"),
])
def test_symbol_from_file_name(name: str, symbol: str) -> None:
    """The symbol comes from the file name, the interval token dropped."""
    assert symbol_from_path(name) == symbol


def test_symbol_override(tmp_path: Path) -> None:
    """An explicit symbol wins over the file name."""
    b = load_bars(_write(tmp_path / "x_1h.csv", [_row(i) for i in range(3)]), "XRP/USD")
    assert b.symbol == "XRP/USD"


def test_align_keeps_common_timestamps(tmp_path: Path) -> None:
    """Multi-symbol alignment is an inner join on timestamps."""
    a = load_bars(_write(tmp_path / "aaa_usd.csv", [_row(i, 10.0 + i) for i in range(6)]))
    b = load_bars(_write(tmp_path / "bbb_usd.csv",
                         [_row(i, 50.0 + i) for i in (0, 2, 3, 4, 5, 7)]))
    m = align_bars([a, b])
    assert m.symbols == ("AAA/USD", "BBB/USD")
    assert m.timestamp_ms.tolist() == [T0 + i * H for i in (0, 2, 3, 4, 5)]
    assert m.close[:, 0].tolist() == [10.0, 12.0, 13.0, 14.0, 15.0]
    assert m.close[:, 1].tolist() == [50.0, 52.0, 53.0, 54.0, 55.0]
    assert m.periods_per_year == 8760.0


def test_align_rejects_repeated_symbols_and_disjoint_files(tmp_path: Path) -> None:
    """The same symbol twice, or files with no common bars, are errors."""
    a = load_bars(_write(tmp_path / "aaa_usd.csv", [_row(i) for i in range(3)]))
    with pytest.raises(BacktestDataError, match="more than one prices file"):
        align_bars([a, a])
    b = load_bars(_write(tmp_path / "bbb_usd.csv", [_row(i) for i in range(10, 13)]))
    with pytest.raises(BacktestDataError, match="common to all"):
        align_bars([a, b])
