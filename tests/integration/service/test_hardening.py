"""The service's edge under hostile input (issue 13): process metrics on /metrics, bounded
and validated correlation returns, encodable error bodies, bounded portfolio_value."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from himari_l3.config.schema import Layer3Config, parse_config
from himari_l3.service import create_app
from integration.service.test_api import _client
from service_support import CAS, SIG


def make_config(tmp_path: Path, **sections: Any) -> Layer3Config:
    """Defaults with the store in ``tmp_path`` and section overrides."""
    return parse_config(Layer3Config, {
        "persistence": {"url": f"sqlite:///{tmp_path / 'l3.sqlite'}"}, **sections})


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


def _loc(r: httpx.Response) -> list[Any]:
    return list(r.json()["detail"][0]["loc"])


async def test_returns_row_over_the_symbol_cap_is_a_422(client: httpx.AsyncClient) -> None:
    """8,000 distinct symbols (144 KB) in one row: 422 on returns, nothing stored."""
    row = {f"S{i:05d}": 0.001 for i in range(8_000)}
    r = await client.post("/v1/returns", json={"returns": row})
    assert r.status_code == 422, r.text
    assert _loc(r) == ["body", "returns"]
    assert "max_symbols_per_row (512)" in r.json()["detail"][0]["msg"]
    store = client.app.state.service.store  # type: ignore[attr-defined]
    assert store.returns() == []


@pytest.mark.parametrize("key", ["", "x" * 65, "BTC\nUSD", "\u0000"])
async def test_returns_keys_follow_the_symbol_rules(client: httpx.AsyncClient,
                                                    key: str) -> None:
    """A bad symbol key is a 422 on returns (it was accepted before)."""
    r = await client.post("/v1/returns", json={"returns": {"BTC-USD": 0.01, key: 0.0}})
    assert r.status_code == 422, r.text
    assert _loc(r) == ["body", "returns"]
    assert "a symbol key" in r.json()["detail"][0]["msg"]


@pytest.mark.parametrize("ts", [9_000_000_000_000_000_000, 2**63, 2**64, -1])
async def test_far_future_or_out_of_range_timestamp_is_a_422_and_harmless(
        tmp_path: Path, ts: int) -> None:
    """timestamp_ns 9e18 (or outside int64) is refused on timestamp_ns; later rows are still
    accepted, and still after a restart on the same store."""
    cfg = make_config(tmp_path)
    async for c in _client(cfg):
        r = await c.post("/v1/returns", json={"returns": {"BTC-USD": 0.01}, "timestamp_ns": ts})
        assert r.status_code == 422, r.text
        assert _loc(r) == ["body", "timestamp_ns"]
        ok = await c.post("/v1/returns", json={"returns": {"BTC-USD": 0.02}})
        assert ok.status_code == 200, ok.text
    async for c in _client(cfg):
        ok = await c.post("/v1/returns", json={"returns": {"BTC-USD": 0.03}})
        assert ok.status_code == 200, ok.text
        assert ok.json()["correlation"]["rows"] == 2


async def test_returns_timestamp_may_lead_the_clock_by_the_configured_skew(
        tmp_path: Path) -> None:
    """portfolio.correlation.max_clock_skew_sec bounds how far ahead a row may be stamped."""
    import time

    cfg = make_config(tmp_path, portfolio={"correlation": {"max_clock_skew_sec": 3600.0}})
    async for c in _client(cfg):
        ahead = time.time_ns() + 1_800 * 10**9
        r = await c.post("/v1/returns", json={"returns": {"A": 0.01}, "timestamp_ns": ahead})
        assert r.status_code == 200, r.text
        too_far = time.time_ns() + 7_200 * 10**9
        r = await c.post("/v1/returns", json={"returns": {"A": 0.01}, "timestamp_ns": too_far})
        assert r.status_code == 422 and _loc(r) == ["body", "timestamp_ns"]
        assert "max_clock_skew_sec (3600 s)" in r.json()["detail"][0]["msg"]


# ----------------------------------------------------------------------------- encodable
SURROGATE = "\ud800"


def _json_body(raw: bytes) -> Any:
    """The body parsed strictly as UTF-8 JSON (what any client must be able to do)."""
    return json.loads(raw.decode("utf-8"))


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/size", {"signal": {**SIG, "symbol": SURROGATE}, "cascade": CAS, "price": 1.0}),
    ("/v1/size", {"signal": {**SIG, "strategy_id": "a" + SURROGATE}, "cascade": CAS,
                  "price": 1.0}),
    ("/v1/size", {"signal": {**SIG, "action": SURROGATE}, "cascade": CAS, "price": 1.0}),
    ("/v1/size", {"signal": {**SIG, "regime": SURROGATE}, "cascade": CAS, "price": 1.0}),
    ("/v1/size", {"signal": SIG, "cascade": CAS, "price": SURROGATE}),
    ("/v1/allocate", {"signals": [SIG], "cascade": {SURROGATE: CAS},
                      "prices": {"BTC-USD": 1.0}}),
    ("/v1/allocate", {"signals": [SIG], "cascade": {"BTC-USD": CAS},
                      "prices": {SURROGATE: 1.0}}),
    ("/v1/outcomes", {"symbol": SURROGATE, "realized_return": 0.01}),
    ("/v1/outcomes", {"symbol": "BTC-USD", "realized_return": 0.01,
                      "strategy_id": SURROGATE}),
    ("/v1/returns", {"returns": {SURROGATE: 0.01}}),
    ("/v1/returns", {"returns": {"BTC-USD": 0.01}, SURROGATE: 1}),
])
async def test_a_lone_surrogate_anywhere_gives_an_encodable_422(
        client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> None:
    """A lone surrogate in any string (value or key) is a 422 whose body is valid UTF-8 JSON
    (it was a 500: the echoed input could not be encoded)."""
    content = json.dumps(body).encode()  # ensure_ascii: the surrogate travels as \\ud800
    r = await client.post(path, content=content,
                          headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    detail = _json_body(r.content)["detail"]
    assert detail and detail[0]["loc"][0] == "body"


async def test_portfolio_value_override_is_bounded_like_the_config(
        client: httpx.AsyncClient) -> None:
    """/v1/size's portfolio_value must be > 0 and <= 1e13 (Layer3Config.portfolio_value)."""
    for value in (1e300, 1.0000001e13, 0.0, -5.0):
        r = await client.post("/v1/size", json={"signal": SIG, "cascade": CAS, "price": 5e4,
                                                "portfolio_value": value})
        assert r.status_code == 422, (value, r.text)
        assert _loc(r) == ["body", "portfolio_value"]
    r = await client.post("/v1/size", json={"signal": SIG, "cascade": CAS, "price": 5e4,
                                            "portfolio_value": 1e13})
    assert r.status_code == 200, r.text


# ----------------------------------------------------------------------- body read timeout
class _Served:
    """The service under a real uvicorn server in a thread on 127.0.0.1 (lifespan on)."""

    def __init__(self, app: Any, **config: Any) -> None:
        import socket
        import threading

        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning",
                                                    timeout_graceful_shutdown=1, **config))
        self.thread = threading.Thread(target=self.server.run,
                                       kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> _Served:
        import time

        self.thread.start()
        deadline = time.monotonic() + 15.0
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "no start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10.0)
        self.sock.close()


@pytest.mark.integration
def test_a_declared_body_that_never_comes_is_cut_off(tmp_path: Path) -> None:
    """A client that declares Content-Length and sends nothing gets a 408 and the
    connection closed after service.body_read_timeout_sec, while other requests are served
    meanwhile (it holds no worker). Bounded: the socket gives up after 10 s."""
    import socket
    import time

    cfg = make_config(tmp_path, service={"body_read_timeout_sec": 0.5})
    with _Served(create_app(cfg, registry=CollectorRegistry())) as srv:
        stalled = socket.create_connection(("127.0.0.1", srv.port), timeout=10.0)
        try:
            stalled.sendall(b"POST /v1/returns HTTP/1.1\r\nHost: l3\r\n"
                            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n")
            t0 = time.monotonic()
            health = httpx.get(f"http://127.0.0.1:{srv.port}/healthz", timeout=5.0)
            assert health.status_code == 200  # served while the other connection stalls
            received = b""
            while True:
                chunk = stalled.recv(65536)  # raises socket.timeout after 10 s: a failure
                if not chunk:
                    break
                received += chunk
            waited = time.monotonic() - t0
        finally:
            stalled.close()
    assert received.startswith(b"HTTP/1.1 408 "), received[:200]
    body = received.split(b"\r\n\r\n", 1)[1]
    assert _json_body(body)["detail"][0]["loc"] == ["body"]
    assert b"body_read_timeout_sec" in body
    assert 0.4 <= waited < 10.0
