"""Reference signal generator (causality, contents) and the JSONL signal format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import write_ohlcv_csv
from himari_l3.backtest.data import BacktestDataError, MarketData, align_bars, load_bars
from himari_l3.backtest.signal_io import read_signals_jsonl, write_signals_jsonl
from himari_l3.backtest.signals import STRATEGY_IDS, reference_signals
from himari_l3.contracts import TacticalAction, TacticalSignal

T0 = 1_705_017_600_000
H = 3_600_000


def _write_bars(path: Path, n: int, seed: int, *, tail_from: int | None = None,
                tail_seed: int = 99) -> Path:
    """Random-walk OHLCV; with ``tail_from`` the bars from there on use another seed."""
    rng = np.random.default_rng(seed)
    r = rng.normal(0.0, 0.008, n)
    if tail_from is not None:
        r[tail_from:] = np.random.default_rng(tail_seed).normal(0.0, 0.03, n - tail_from)
    close_arr = 30_000.0 * np.exp(np.cumsum(r))
    vol_arr = rng.uniform(50, 150, n)
    if tail_from is not None:
        vol_arr[tail_from:] *= 7.0
    return write_ohlcv_csv(path, close_arr.tolist(), vol_arr.tolist())


def _market(path: Path) -> MarketData:
    return align_bars([load_bars(path)])


def test_reference_signals_cover_every_bar_and_strategy(tmp_path: Path) -> None:
    """Two strategies per bar, warm-up HOLD, and valid sizing inputs."""
    tape = reference_signals(_market(_write_bars(tmp_path / "btc_usdt_1h.csv", 400, 1)))
    assert len(tape) == 400
    assert all(tuple(s.strategy_id for s in bar) == STRATEGY_IDS for bar in tape.signals)
    assert all(s.action is TacticalAction.HOLD for bar in tape.signals[:48] for s in bar)
    acts = tape.counts()
    assert acts["BUY"] + acts["STRONG_BUY"] > 0 and acts["SELL"] + acts["STRONG_SELL"] > 0
    s = tape.signals[200][0]
    assert s.timestamp_ns == (T0 + 200 * H) * 1_000_000
    assert s.predicted_volatility is not None and 0 < s.predicted_volatility < 0.1
    assert set(tape.cascade[200]) == {"BTC/USDT"}


def test_generator_uses_no_future_bars(tmp_path: Path) -> None:
    """Rewriting every bar after t leaves all signals and cascade readings up to t identical."""
    t = 250
    base = reference_signals(_market(_write_bars(tmp_path / "a_usd.csv", 400, 3)))
    (tmp_path / "mutated").mkdir()
    alt = reference_signals(_market(_write_bars(tmp_path / "mutated" / "a_usd.csv", 400, 3,
                                                tail_from=t + 1)))
    assert base.signals[: t + 1] == alt.signals[: t + 1]
    assert base.cascade[: t + 1] == alt.cascade[: t + 1]
    assert base.signals[t + 1:] != alt.signals[t + 1:]  # the mutation did reach the signals


def test_jsonl_round_trip_reproduces_the_tape(tmp_path: Path) -> None:
    """Writing the generator's signals and reading them back gives the same tape."""
    market = _market(_write_bars(tmp_path / "btc_usdt_1h.csv", 120, 4))
    tape = reference_signals(market)
    path = tmp_path / "signals.jsonl"
    n = write_signals_jsonl(path, (s for bar in tape.signals for s in bar))
    assert n == 240
    first = json.loads(path.read_text().splitlines()[0])
    assert TacticalSignal.from_dict(first) == tape.signals[0][0]
    back, dropped = read_signals_jsonl(path, market)
    assert dropped == 0
    assert back.signals == tape.signals
    assert back.cascade == tape.cascade


def _signal(ts_ms: float, *, sid: str = "s1", conf: float = 0.6) -> TacticalSignal:
    return TacticalSignal(sid, "BTC/USDT", "BUY", conf, 0.2, "RANGING", int(ts_ms * 1e6))


def test_signal_applies_to_first_bar_at_or_after_its_timestamp(tmp_path: Path) -> None:
    """Exact stamp -> that bar; between bars -> the next one; after the last -> dropped;
    two for the same bar -> the latest wins."""
    market = _market(_write_bars(tmp_path / "btc_usdt_1h.csv", 10, 5))
    path = tmp_path / "s.jsonl"
    write_signals_jsonl(path, [
        _signal(T0 + 2 * H), _signal(T0 + 2 * H + 1), _signal(T0 + 9 * H + 1),
        _signal(T0 - 5 * H, sid="early"), _signal(T0 + 4.5 * H, conf=0.9),
        _signal(T0 + 4.2 * H, conf=0.7),
    ])
    tape, dropped = read_signals_jsonl(path, market)
    assert dropped == 1
    assert [len(b) for b in tape.signals] == [1, 0, 1, 1, 0, 1, 0, 0, 0, 0]
    assert tape.signals[0][0].strategy_id == "early"
    assert tape.signals[5][0].confidence == 0.9


def test_jsonl_errors_name_the_line(tmp_path: Path) -> None:
    """Bad JSON, a bad field and an unknown symbol are reported with context."""
    market = _market(_write_bars(tmp_path / "btc_usdt_1h.csv", 10, 6))
    good = json.dumps(_signal(T0).to_dict())
    cases = {
        "not json": "line 2: not valid JSON",
        json.dumps({**_signal(T0).to_dict(), "confidence": 1.7}): "line 2: confidence was 1.7",
        json.dumps({**_signal(T0).to_dict(), "symbol": "ETH/USDT"}): "'ETH/USDT'",
    }
    for bad, needle in cases.items():
        path = tmp_path / "bad.jsonl"
        path.write_text(good + "\n" + bad + "\n", encoding="utf-8")
        with pytest.raises(BacktestDataError) as info:
            read_signals_jsonl(path, market)
        assert needle in str(info.value)
