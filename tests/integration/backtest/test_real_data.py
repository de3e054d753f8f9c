"""Backtest on the real two-year hourly BTC/USDT file, checked against an independent
recomputation from equity.csv and the prices file."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import BTC_DATA
from himari_l3.backtest import main

pytestmark = pytest.mark.slow

DATA = BTC_DATA
REL = 1e-9


def _need_data() -> Path:
    if not DATA.exists():
        pytest.skip(f"real data file {DATA} is absent (expected <repo>/../shared/data/)")
    return DATA


def _read_equity(path: Path) -> dict[str, np.ndarray[Any, Any]]:
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0] if k != "datetime"}


def _closes(path: Path) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    raw = np.genfromtxt(path, delimiter=",", skip_header=1, usecols=(0, 4))
    return raw[:, 0], raw[:, 1]


def _check(out: Path, phase: int) -> dict[str, Any]:
    summary = json.loads((out / "summary.json").read_text())
    m, inputs = summary["metrics"], summary["inputs"]
    eq = _read_equity(out / "equity.csv")
    ts, close = _closes(DATA)
    assert len(eq["equity"]) == len(close) == 17_520
    np.testing.assert_array_equal(eq["timestamp_ms"], ts)

    e0 = inputs["initial_capital"]
    equity = eq["equity"]
    rets = equity / np.concatenate([[e0], equity[:-1]]) - 1.0
    ppy = 8760.0  # hourly bars, 24/7 market
    assert inputs["periods_per_year"] == ppy
    total = equity[-1] / e0 - 1.0
    vol = float(np.std(rets, ddof=1)) * math.sqrt(ppy)
    sharpe = float(np.mean(rets)) / float(np.std(rets, ddof=1)) * math.sqrt(ppy)
    peak = np.maximum.accumulate(np.concatenate([[e0], equity]))[1:]
    max_dd = float(np.min(equity / peak - 1.0))
    # From the positions and the prices file: what traded at each bar is the position minus
    # the previous one drifted by the bar's price change (at the close); the fills paid at
    # most the fixed slippage plus impact over that, and every USD they cost is gone from
    # equity: costs = previous equity + the drifted position's gain - equity now.
    pos = eq["position_usd"]
    drifted = np.concatenate([[0.0], pos[:-1] * close[1:] / close[:-1]])
    at_close = np.abs(pos - drifted)
    prev_equity = np.concatenate([[e0], equity[:-1]])
    prev_pos = np.concatenate([[0.0], pos[:-1]])
    costs = prev_equity + (drifted - prev_pos) - equity
    np.testing.assert_allclose(costs, eq["fees_usd"] + eq["slippage_usd"], rtol=0,
                               atol=1e-6 * e0)
    traded = eq["traded_usd"]
    # Slippage: the fills' distance from the close (buys above it, sells below it).
    np.testing.assert_allclose(np.abs(traded - at_close), eq["slippage_usd"], rtol=0,
                               atol=1e-7 * e0)
    assert np.all(eq["slippage_usd"] <= 0.01 * traded + 1e-9)
    np.testing.assert_allclose(eq["fees_usd"], traded * inputs["fees_bps"] / 1e4, rtol=1e-9,
                               atol=1e-12)
    turnover = traded / (equity + costs)  # equity before this bar's fills
    exposure = np.abs(pos) / equity

    assert m["total_return"] == pytest.approx(total, rel=REL)
    assert m["annualized_volatility"] == pytest.approx(vol, rel=REL)
    assert m["sharpe"] == pytest.approx(sharpe, rel=REL)
    assert m["max_drawdown"] == pytest.approx(max_dd, rel=REL)
    assert m["turnover_total"] == pytest.approx(float(turnover.sum()), rel=REL)
    assert m["turnover_annualized"] == pytest.approx(float(turnover.mean()) * ppy, rel=REL)
    assert m["average_exposure"] == pytest.approx(float(exposure.mean()), rel=REL)
    assert m["annualized_return"] == pytest.approx((1 + total) ** (ppy / len(equity)) - 1,
                                                   rel=REL)
    np.testing.assert_allclose(eq["return"], rets, rtol=0, atol=1e-15)
    np.testing.assert_allclose(eq["drawdown"], equity / peak - 1.0, rtol=0, atol=1e-15)
    assert m["turnover_total"] > 0 and np.count_nonzero(pos) > 0

    for name in ("equity.png", "drawdown.png", "exposure.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
    html = (out / "report.html").read_text()
    assert len(html) > 50_000 and html.count("data:image/png;base64,") == 3
    sig = summary["significance"]
    assert sig["n_shuffles"] == 5 and 1 / 6 <= sig["p_value"] <= 1.0
    assert summary["policy"] == f"phase{phase}"
    return summary


def test_phase1_on_two_years_of_hourly_btc(tmp_path: Path) -> None:
    """Phase 1 replay of the real file: summary numbers equal an independent recomputation."""
    out = tmp_path / "p1"
    assert main(["--prices", str(_need_data()), "--phase", "1", "--shuffles", "5",
                 "--out", str(out), "--no-progress"]) == 0
    s = _check(out, 1)
    assert s["inputs"]["symbols"] == ["BTC/USDT"]
    rows = {r["policy"]: r for r in s["ablation"]}
    assert rows["fixed_fraction"]["status"] == "ok" and rows["phase1"]["status"] == "ok"


def test_phase2_on_two_years_of_hourly_btc(tmp_path: Path) -> None:
    """Phase 2 replay of the real file: same recomputation, and under 30 s per replay."""
    _need_data()
    if importlib.util.find_spec("himari_l3.phase2") is None:
        pytest.skip("himari_l3.phase2 is not importable yet")
    out = tmp_path / "p2"
    assert main(["--prices", str(DATA), "--phase", "2", "--shuffles", "5", "--out", str(out),
                 "--no-progress"]) == 0
    s = _check(out, 2)
    assert s["performance"]["elapsed_sec"] < 30.0
