"""`himari-l3 backtest` CLI: outputs, significance, errors, progress bar."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import write_ohlcv_csv
from himari_l3.backtest import main, read_signals_jsonl, reference_signals, write_signals_jsonl
from himari_l3.backtest.cli import ProgressBar
from himari_l3.backtest.data import align_bars, load_bars


def _write_bars(path: Path, n: int, seed: int) -> Path:
    """Random-walk OHLCV bars."""
    rng = np.random.default_rng(seed)
    close = (30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.008, n)))).tolist()
    vol = rng.uniform(50, 150, n).tolist()
    return write_ohlcv_csv(path, close, vol, datetime_column=True)


def _summary(out: Path) -> dict[str, object]:
    return json.loads((out / "summary.json").read_text())  # type: ignore[no-any-return]


def test_cli_writes_every_output(tmp_path: Path) -> None:
    """A phase 1 run writes summary.json, equity.csv, three PNGs and the HTML report."""
    prices = _write_bars(tmp_path / "btc_usdt_1h.csv", 300, 1)
    out = tmp_path / "out"
    assert main(["--prices", str(prices), "--out", str(out), "--shuffles", "3",
                 "--no-progress"]) == 0
    for name in ("summary.json", "equity.csv", "equity.png", "drawdown.png", "exposure.png",
                 "report.html"):
        assert (out / name).stat().st_size > 500, name
    s = _summary(out)
    assert s["policy"] == "phase1"
    assert s["inputs"]["symbols"] == ["BTC/USDT"]  # type: ignore[index]
    assert s["inputs"]["periods_per_year"] == 8760.0  # type: ignore[index]
    policies = [r["policy"] for r in s["ablation"]]  # type: ignore[attr-defined]
    assert policies[:2] == ["fixed_fraction", "phase1"]
    with (out / "equity.csv").open() as fh:
        header = next(csv.reader(fh))
    assert header == ["timestamp_ms", "datetime", "equity", "return", "position_usd",
                      "exposure", "turnover", "drawdown", "traded_usd", "fees_usd",
                      "slippage_usd", "fills", "trading_state"]
    ex: Any = s["execution"]
    assert ex["executor"] == "paper" and ex["fills"] > 0
    assert ex["fees_usd"] > 0 and "transitions" in ex
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "Ablation" in html


def test_significance_is_seeded_and_bounded(tmp_path: Path) -> None:
    """Same seed -> same shuffled Sharpes; 1/(N+1) <= p <= 1."""
    prices = _write_bars(tmp_path / "btc_usdt_1h.csv", 250, 2)
    sigs = []
    for k in range(2):
        out = tmp_path / f"o{k}"
        assert main(["--prices", str(prices), "--out", str(out), "--shuffles", "4",
                     "--seed", "5", "--no-progress"]) == 0
        sigs.append(_summary(out)["significance"])
    assert sigs[0]["shuffled_sharpes"] == sigs[1]["shuffled_sharpes"]  # type: ignore[index]
    p = sigs[0]["p_value"]  # type: ignore[index]
    assert 1 / 5 <= p <= 1.0
    assert len(sigs[0]["shuffled_sharpes"]) == 4  # type: ignore[index]


def test_cli_replays_a_recorded_signals_file(tmp_path: Path) -> None:
    """--signals JSONL gives the same run as the generator it was recorded from."""
    prices = _write_bars(tmp_path / "btc_usdt_1h.csv", 200, 3)
    market = align_bars([load_bars(prices)])
    jsonl = tmp_path / "sig.jsonl"
    write_signals_jsonl(jsonl, (s for bar in reference_signals(market).signals for s in bar))
    assert read_signals_jsonl(jsonl, market)[1] == 0
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["--prices", str(prices), "--shuffles", "0", "--no-progress"]
    assert main([*common, "--out", str(a)]) == 0
    assert main([*common, "--out", str(b), "--signals", str(jsonl)]) == 0
    assert _summary(a)["metrics"] == _summary(b)["metrics"]
    assert (a / "equity.csv").read_text() == (b / "equity.csv").read_text()


def test_cli_multi_symbol_adds_per_symbol_position_columns(tmp_path: Path) -> None:
    """Two prices files are aligned; equity.csv gets one position column per symbol."""
    a = _write_bars(tmp_path / "aaa_usdt_1h.csv", 200, 4)
    b = _write_bars(tmp_path / "bbb_usdt_1h.csv", 200, 5)
    out = tmp_path / "out"
    assert main(["--prices", str(a), "--prices", str(b), "--symbol", "AAA/USDT", "--symbol",
                 "BBB/USDT", "--out", str(out), "--shuffles", "0", "--no-progress"]) == 0
    with (out / "equity.csv").open() as fh:
        header = next(csv.reader(fh))
    assert header[-2:] == ["position_usd[AAA/USDT]", "position_usd[BBB/USDT]"]


@pytest.mark.parametrize(("args", "needle"), [
    (["--rl", "mock"], "needs --phase 3"),
    (["--rl", "ftp://x"], "expected off, mock or an http"),
    (["--shuffles", "-1"], "--shuffles"),
    (["--fees-bps", "-2"], "--fees-bps"),
    (["--symbol", "A", "--symbol", "B"], "--symbol"),
])
def test_cli_usage_errors_return_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   args: list[str], needle: str) -> None:
    """Bad flags exit with code 2 and say what was wrong."""
    prices = _write_bars(tmp_path / "btc_usdt_1h.csv", 10, 6)
    assert main(["--prices", str(prices), "--out", str(tmp_path / "o"), *args]) == 2
    assert needle in capsys.readouterr().err


def test_cli_bad_prices_file_returns_2_with_location(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed CSV is reported with file, line and column, exit code 2."""
    bad = tmp_path / "btc_usdt_1h.csv"
    bad.write_text("timestamp,open,high,low,close,volume\n1,1,1,1,1,1\n2,1,1,1,nan,1\n")
    assert main(["--prices", str(bad), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "line 3, column 'close'" in err and str(bad) in err


def test_help_returns_0(capsys: pytest.CaptureFixture[str]) -> None:
    """--help prints usage and returns 0 instead of exiting the caller."""
    assert main(["--help"]) == 0
    assert "--prices" in capsys.readouterr().out


def test_progress_bar_draws_only_when_enabled() -> None:
    """The bar writes label, percentage and bars/s when on, nothing when off."""
    on, off = io.StringIO(), io.StringIO()
    for stream, enabled in ((on, True), (off, False)):
        bar = ProgressBar(stream, enabled=enabled, min_interval=0.0)
        bar("phase1", 50, 100)
        bar("phase1", 100, 100)
        bar.close()
    assert "phase1" in on.getvalue() and "100.0%" in on.getvalue()
    assert "bars/s" in on.getvalue()
    assert off.getvalue() == ""
