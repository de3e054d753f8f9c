"""The service's edge under hostile input (issue 13): process metrics on /metrics, bounded
and validated correlation returns, encodable error bodies, bounded portfolio_value."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from himari_l3.config.schema import Layer3Config, parse_config
from himari_l3.service import create_app

SIG: dict[str, Any] = {"strategy_id": "momentum", "symbol": "BTC-USD", "action": "BUY",
                       "confidence": 0.7, "risk_score": 0.3, "regime": "RANGING",
                       "expected_return": 0.02, "predicted_volatility": 0.05}
CAS: dict[str, Any] = {"funding_rate": 0.0001, "oi_change_pct": 0.0, "volume_ratio": 1.0,
                       "onchain_whale_pressure": 0.0, "exchange_netflow_zscore": 0.0}


def make_config(tmp_path: Path, **sections: Any) -> Layer3Config:
    """Defaults with the store in ``tmp_path`` and section overrides."""
    return parse_config(Layer3Config, {
        "persistence": {"url": f"sqlite:///{tmp_path / 'l3.sqlite'}"}, **sections})


async def _client(cfg: Layer3Config) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(cfg, registry=CollectorRegistry())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://l3") as c:
        c.app = app  # type: ignore[attr-defined]
        yield c


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app with the default config."""
    async for c in _client(make_config(tmp_path)):
        yield c


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process_* is Linux-only")
async def test_metrics_expose_process_and_python_families(client: httpx.AsyncClient) -> None:
    """GET /metrics carries RSS, CPU and GC families (the dashboard's process panel)."""
    text = (await client.get("/metrics")).text
    rss = [line for line in text.splitlines()
           if line.startswith("process_resident_memory_bytes ")]
    assert rss and float(rss[0].split()[1]) > 10e6
    assert "process_cpu_seconds_total " in text
    assert "python_gc_collections_total{" in text
    assert "himari_l3_http_requests_total" in text or "himari_l3_build_info" in text
