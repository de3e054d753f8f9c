"""Shared fixtures, builders and hypothesis strategies for Layer 3 tests.

Generic on purpose so Phase 2/3, service and backtest tests can reuse them:

* ``make_signal(**kw)`` / ``make_cascade(**kw)``: valid records with overridable fields;
* ``ordinary_signals()``, ``valid_signals()``, ``cascade_indicators()``, ``calm_cascades()``:
  hypothesis strategies (ordinary = the acceptance criteria's "ordinary signal" ranges);
* fixtures ``clock`` (a ManualClock), ``engine`` (a Phase 1 sizer without metrics) and
  ``metrics_observer`` (a Prometheus observer on an isolated registry).
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from himari_l3 import (
    CascadeIndicators,
    ManualClock,
    MarketRegime,
    TacticalAction,
    TacticalSignal,
)
from himari_l3.config.schema import SizingConfig
from himari_l3.observability.metrics import Layer3Metrics
from himari_l3.observability.prometheus import PrometheusObserver
from himari_l3.phase1 import Layer3Phase1

SIGNAL_DEFAULTS: dict[str, Any] = {
    "strategy_id": "momentum",
    "symbol": "BTC-USD",
    "action": TacticalAction.BUY,
    "confidence": 0.7,
    "risk_score": 0.3,
    "regime": MarketRegime.RANGING,
    "timestamp_ns": 1_700_000_000_000_000_000,
    "expected_return": 0.02,
    "predicted_volatility": 0.05,
}

CASCADE_DEFAULTS: dict[str, Any] = {
    "funding_rate": 0.0001,
    "oi_change_pct": 0.0,
    "volume_ratio": 1.0,
    "onchain_whale_pressure": 0.0,
    "exchange_netflow_zscore": 0.0,
}

REPO = Path(__file__).resolve().parents[1]
BTC_DATA = REPO.parent / "shared" / "data" / "btc_usdt_1h.csv"  # ../shared beside the repo

PRICE = 50_000.0
PORTFOLIO = 100_000.0


def make_signal(**kw: Any) -> TacticalSignal:
    """A valid TacticalSignal (BUY, confidence 0.7, 2 % edge, 5 % vol) with overrides."""
    return TacticalSignal(**{**SIGNAL_DEFAULTS, **kw})


def make_cascade(**kw: Any) -> CascadeIndicators:
    """Calm cascade indicators (score 0.02, MONITOR) with overrides."""
    return CascadeIndicators(**{**CASCADE_DEFAULTS, **kw})


def all_finite(value: Any) -> bool:
    """Every float anywhere in a JSON-like value is finite (no NaN, no infinity)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(all_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(all_finite(v) for v in value)
    return True


def make_engine(**kw: Any) -> Layer3Phase1:
    """A Phase 1 sizer with metrics off and a manual clock unless overridden."""
    kw.setdefault("portfolio_value", PORTFOLIO)
    kw.setdefault("enable_metrics", False)
    kw.setdefault("clock", ManualClock())
    return Layer3Phase1(**kw)


def make_metrics_observer() -> PrometheusObserver:
    """A Prometheus observer on its own registry (never the process-wide one)."""
    return PrometheusObserver(Layer3Metrics(CollectorRegistry()))


@pytest.fixture
def clock() -> ManualClock:
    """A clock that only moves when the test advances it."""
    return ManualClock()


@pytest.fixture
def engine(clock: ManualClock) -> Layer3Phase1:
    """Phase 1 sizer, default config, metrics off."""
    return make_engine(clock=clock)


@pytest.fixture
def metrics_observer() -> PrometheusObserver:
    """Prometheus observer on an isolated registry."""
    return make_metrics_observer()


@pytest.fixture
def default_config() -> SizingConfig:
    """The default sizing configuration."""
    return SizingConfig()


# --------------------------------------------------------------------------- strategies
ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=12)
symbols = st.sampled_from([f"SYM{i}" for i in range(5)])
actions = st.sampled_from(list(TacticalAction))
regimes = st.sampled_from(list(MarketRegime))
unit = st.floats(0.0, 1.0, allow_nan=False)
prices = st.floats(1e-4, 1e6, allow_nan=False, allow_infinity=False)


@st.composite
def valid_signals(draw: st.DrawFn, **fixed: Any) -> TacticalSignal:
    """Any valid TacticalSignal over the whole allowed range (optional fields may be None)."""
    fields: dict[str, Any] = {
        "strategy_id": draw(ids),
        "symbol": draw(symbols),
        "action": draw(actions),
        "confidence": draw(unit),
        "risk_score": draw(unit),
        "regime": draw(regimes),
        # up to the test clock's now (ManualClock's wall time): a batch refuses signals
        # stamped further ahead than portfolio.max_signal_clock_skew_sec
        "timestamp_ns": draw(st.integers(0, 1_700_000_000_000_000_000)),
        "expected_return": draw(st.none() | st.floats(-1.0, 1.0, allow_nan=False)),
        "predicted_volatility": draw(st.none() | st.floats(1e-6, 5.0, allow_nan=False)),
        "signal_strength": draw(st.none() | unit),
        "sentiment_score": draw(st.none() | unit),
        "sentiment_confidence": draw(st.none() | unit),
    }
    fields.update(fixed)
    return TacticalSignal(**fields)


@st.composite
def ordinary_signals(draw: st.DrawFn, **fixed: Any) -> TacticalSignal:
    """Signals in the acceptance criteria's ordinary ranges: confidence 0.3-0.95, expected
    return 0.2-6 %, volatility 1-25 %."""
    fields: dict[str, Any] = {
        "strategy_id": draw(st.sampled_from(["momentum", "meanrev", "breakout"])),
        "symbol": draw(symbols),
        "action": draw(st.sampled_from([TacticalAction.BUY, TacticalAction.STRONG_BUY])),
        "confidence": draw(st.floats(0.3, 0.95)),
        "risk_score": draw(st.floats(0.0, 1.0)),
        "regime": draw(regimes),
        "timestamp_ns": 1,
        "expected_return": draw(st.floats(0.002, 0.06)),
        "predicted_volatility": draw(st.floats(0.01, 0.25)),
    }
    fields.update(fixed)
    return TacticalSignal(**fields)


@st.composite
def cascade_indicators(draw: st.DrawFn) -> CascadeIndicators:
    """Any valid CascadeIndicators, calm to extreme."""
    return CascadeIndicators(
        funding_rate=draw(st.floats(-1.0, 1.0)),
        oi_change_pct=draw(st.floats(-1.0, 10.0)),
        volume_ratio=draw(st.floats(0.0, 1000.0)),
        onchain_whale_pressure=draw(unit),
        exchange_netflow_zscore=draw(st.floats(-50.0, 50.0)),
        liquidation_volume_24h=draw(st.none() | st.floats(0.0, 1e13)),
    )


@st.composite
def calm_cascades(draw: st.DrawFn) -> CascadeIndicators:
    """Quiet-market indicators whose cascade score stays below the REDUCE_50 band."""
    return CascadeIndicators(
        funding_rate=draw(st.floats(-0.0003, 0.0003)),
        oi_change_pct=draw(st.floats(-0.02, 0.05)),
        volume_ratio=draw(st.floats(0.5, 1.5)),
        onchain_whale_pressure=draw(st.floats(0.0, 0.2)),
        exchange_netflow_zscore=draw(st.floats(-2.0, 0.5)),
    )


# --------------------------------------------------------------------- backtest bars
BARS_T0_MS = 1_705_017_600_000
HOUR_MS = 3_600_000


def write_ohlcv_csv(path: Path, close: list[float], volume: list[float], *,
                    datetime_column: bool = False) -> Path:
    """Hourly OHLCV bars in the layout of ``../shared/data/btc_usdt_1h.csv`` (each bar opens
    at the previous close; high/low 0.2 % beyond open and close); returns ``path``."""
    lines = ["timestamp,open,high,low,close,volume" + (",datetime" if datetime_column else "")]
    prev = close[0]
    for i, (c, v) in enumerate(zip(close, volume, strict=True)):
        hi, lo = max(prev, c) * 1.002, min(prev, c) * 0.998
        row = f"{BARS_T0_MS + i * HOUR_MS},{prev!r},{hi!r},{lo!r},{c!r},{v!r}"
        lines.append(row + (",x" if datetime_column else ""))
        prev = c
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------ RL fault server
@contextlib.contextmanager
def fault_server(hang_sec: float, *, batch: bool = True) -> Iterator[tuple[Any, Any]]:
    """The reference RL server on 127.0.0.1 with a fault injector (``hang`` sleeps
    ``hang_sec``; ``batch=False``: per-signal route only); yields (server, injector) and
    stops the server afterwards."""
    from himari_l3.rl.policy import RLPolicy
    from himari_l3.rl.server import BackgroundRLServer, FaultInjector, create_rl_app

    fault = FaultInjector(hang_sec=hang_sec)
    srv = BackgroundRLServer(create_rl_app(RLPolicy.default(), fault, batch=batch)).start()
    try:
        yield srv, fault
    finally:
        srv.stop()


# ------------------------------------------------------------------------- Redis
@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``HIMARI_L3_REDIS_URL`` when set (CI starts a server), else a throwaway
    ``redis-server`` on a free loopback port for the session. Tests use names of their own
    (`unique_streams`), so they share one server safely."""
    import os

    from redis_support import RedisServer, have_redis_server

    url = os.environ.get("HIMARI_L3_REDIS_URL")
    if url:
        yield url
        return
    if not have_redis_server():
        pytest.skip("redis-server is not installed (apt-get install redis-server), and "
                    "HIMARI_L3_REDIS_URL is not set")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Any]:
    """A redis-server of this test alone (to restart or kill it)."""
    from redis_support import RedisServer, have_redis_server

    if not have_redis_server():
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.kill()


def mutable_ids(root: Any, own: bool) -> set[int]:
    """Ids of the dicts, lists, sets and deques reachable from ``root`` (through this
    package's objects' attributes when ``own``; plain containers otherwise)."""
    seen: set[int] = set()
    found: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, bool, type(None))):
            continue
        seen.add(id(obj))
        if isinstance(obj, (dict, list, set, deque)):
            found.add(id(obj))
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset, deque)):
            stack.extend(obj)
        elif own and type(obj).__module__.startswith("himari_l3"):
            slots = [s for c in type(obj).__mro__ for s in getattr(c, "__slots__", ())]
            stack.extend(getattr(obj, s) for s in slots if hasattr(obj, s))
            stack.extend(getattr(obj, "__dict__", {}).values())
    return found

