"""Hostile but well-formed input at the service's edge (issue 13, part B): signal timestamps
within int64 and the configured skew, extreme finite numbers, an empty returns row, bodies
that are not decodable JSON. Each is a 4xx naming the field, or a 200 whose numbers are all
finite — never a null unit, stop or take-profit from overflow, never a 500."""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration.service.test_api import _client
from integration.service.test_hardening import make_config
from service_support import CAS, SIG


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app with the default config (skew 60 s)."""
    async for c in _client(make_config(tmp_path)):
        yield c


def _loc(r: httpx.Response) -> list[Any]:
    return list(r.json()["detail"][0]["loc"])


def _size(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"signal": dict(SIG), "cascade": CAS, "price": 50_000.0}
    body.update(over)
    return body


def _allocate(sig: dict[str, Any], price: float = 50_000.0) -> dict[str, Any]:
    return {"signals": [sig], "cascade": {sig["symbol"]: CAS}, "prices": {sig["symbol"]: price}}


def _numbers(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _numbers(v)]
    if isinstance(value, list):
        return [x for v in value for x in _numbers(v)]
    return [float(value)] if isinstance(value, (int, float)) and not isinstance(
        value, bool) else []


# ------------------------------------------------------------------------ timestamps
@pytest.mark.parametrize("ts", [2**63, 2**64, 10**30, -1])
async def test_a_signal_timestamp_outside_int64_is_a_422(client: httpx.AsyncClient,
                                                         ts: int) -> None:
    """timestamp_ns outside 0..2^63-1 is refused on the signal's timestamp_ns, both routes."""
    r = await client.post("/v1/size", json=_size(signal={**SIG, "timestamp_ns": ts}))
    assert r.status_code == 422, r.text
    assert _loc(r) == ["body", "signal", "timestamp_ns"]
    r = await client.post("/v1/allocate", json=_allocate({**SIG, "timestamp_ns": ts}))
    assert r.status_code == 422, r.text
    assert _loc(r) == ["body", "signals", 0, "timestamp_ns"]


async def test_a_signal_stamped_far_ahead_of_the_clock_is_a_422(
        client: httpx.AsyncClient) -> None:
    """A signal stamped 9e18 (year 2255) or 10 minutes ahead is refused, naming
    timestamp_ns and portfolio.max_signal_clock_skew_sec; 30 s ahead is accepted; nothing
    refused is stored."""
    for ts in (9 * 10**18, time.time_ns() + 600 * 10**9):
        r = await client.post("/v1/size", json=_size(signal={**SIG, "timestamp_ns": ts}))
        assert r.status_code == 422, r.text
        assert _loc(r) == ["body", "signal", "timestamp_ns"]
        assert "max_signal_clock_skew_sec" in r.json()["detail"][0]["msg"]
        r = await client.post("/v1/allocate", json=_allocate({**SIG, "timestamp_ns": ts}))
        assert r.status_code == 422 and _loc(r) == ["body", "signals", 0, "timestamp_ns"]
    store = client.app.state.service.store  # type: ignore[attr-defined]
    assert store.decisions() == []
    soon = time.time_ns() + 30 * 10**9
    r = await client.post("/v1/size", json=_size(signal={**SIG, "timestamp_ns": soon}))
    assert r.status_code == 200, r.text
    r = await client.post("/v1/allocate", json=_allocate({**SIG, "timestamp_ns": soon}))
    assert r.status_code == 200, r.text


# ------------------------------------------------------------------- extreme numbers
@pytest.mark.parametrize(("over", "loc"), [
    ({"current_position_usd": 1e308}, ["body", "current_position_usd"]),
    ({"current_position_usd": -1.0000001e15}, ["body", "current_position_usd"]),
    ({"price": 1e308}, ["body", "price"]),
    ({"price": 5e-324}, ["body", "price"]),
    ({"price": 1.01e12}, ["body", "price"]),
    ({"portfolio_value": 1e300}, ["body", "portfolio_value"]),
    ({"cascade": {**CAS, "liquidation_volume_24h": 1e308}},
     ["body", "cascade", "liquidation_volume_24h"]),
])
async def test_extreme_finite_numbers_are_a_422_naming_the_field(
        client: httpx.AsyncClient, over: dict[str, Any], loc: list[Any]) -> None:
    """Finite but absurd inputs are refused on their field (they gave a 200 with null or
    infinite units, stops or take-profits, or a HOLD sized against a 1e308 position)."""
    r = await client.post("/v1/size", json=_size(**over))
    assert r.status_code == 422, r.text
    assert _loc(r) == loc
    assert "expected" in r.json()["detail"][0]["msg"]


@pytest.mark.parametrize("price", [1e308, 5e-324, 0.0, 1.01e12])
async def test_an_extreme_price_in_a_batch_is_a_422_naming_it(client: httpx.AsyncClient,
                                                              price: float) -> None:
    """/v1/allocate's prices are bounded like /v1/size's price."""
    r = await client.post("/v1/allocate", json=_allocate(dict(SIG), price))
    assert r.status_code == 422, r.text
    assert _loc(r) == ["body", "prices", "BTC-USD"]


@pytest.mark.parametrize(("price", "current", "action", "vol"), [
    (1e-12, None, "BUY", 5.0), (1e12, None, "BUY", 5.0), (1e12, None, "BUY", 1e-9),
    (1e-12, 1e15, "HOLD", 0.05), (1e12, -1e15, "HOLD", 5.0), (1e-12, -1e15, "SELL", 5.0),
])
async def test_the_extremes_accepted_give_finite_numbers_only(
        client: httpx.AsyncClient, price: float, current: float | None, action: str,
        vol: float) -> None:
    """At the edges of every accepted range the decision's numbers are all finite: units
    are a number, and a missing stop or take-profit comes with its reason code (or no
    position: nothing to bracket)."""
    sig = {**SIG, "action": action, "predicted_volatility": vol, "expected_return": 1.0,
           "confidence": 1.0, "risk_score": 0.0}
    r = await client.post("/v1/size", json=_size(signal=sig, price=price,
                                                 current_position_usd=current,
                                                 portfolio_value=1e13))
    assert r.status_code == 200, r.text
    out = json.loads(r.content)
    assert all(math.isfinite(x) for x in _numbers(out))
    assert isinstance(out["position_size_units"], float)
    for field in ("stop_loss_price", "take_profit_price"):
        if out[field] is None and out["position_size_usd"] != 0.0:
            assert "BRACKET_BEYOND_ZERO" in out["reason_codes"] or (
                "NO_VOLATILITY_FOR_BRACKET" in out["reason_codes"]), out


# ----------------------------------------------------------------------------- bodies
async def test_an_empty_returns_row_is_a_422(client: httpx.AsyncClient) -> None:
    """{"returns": {}} observes nothing but would take a window slot: refused on returns."""
    r = await client.post("/v1/returns", json={"returns": {}})
    assert r.status_code == 422, r.text
    assert _loc(r) == ["body", "returns"]
    assert client.app.state.service.store.returns() == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(("content", "says"), [
    (b'{"returns": {"\xff\xfe": 0.1}}', "not JSON in UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "deeper than the parser allows"),
    (b'{"returns":' + b'{"a":' * 5_000 + b"1" + b"}" * 5_001, "deeper than the parser allows"),
])
async def test_a_body_that_is_not_decodable_json_is_a_documented_400(
        client: httpx.AsyncClient, content: bytes, says: str) -> None:
    """Invalid UTF-8 or too deep nesting: 400 naming the body and why (it was an
    undocumented 400 with a bare sentence); a JSON syntax error stays a 422."""
    r = await client.post("/v1/returns", content=content,
                          headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["body"] and detail["type"] == "json_invalid"
    assert says in detail["msg"]
    doc = (await client.get("/openapi.json")).json()
    assert "400" in doc["paths"]["/v1/returns"]["post"]["responses"]
    r = await client.post("/v1/returns", content=b"{not json",
                          headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"


# ------------------------------------------------------------------- slow headers
def _wait_closed(sock: Any) -> bytes:
    """Read until the server closes (socket.timeout after 10 s: a failure)."""
    received = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return received
        received += chunk


@pytest.mark.integration
@pytest.mark.parametrize("sent", [b"", b"POST /v1/returns HTTP/1.1\r\nHost: l3\r\n"])
def test_request_headers_that_never_complete_are_cut_off(tmp_path: Path,
                                                         sent: bytes) -> None:
    """A connection that sends nothing, or half its headers, is closed after
    service.header_read_timeout_sec by the protocol `himari-l3 serve` runs (plain uvicorn
    held it for ever: no header timeout); other clients are served meanwhile, and a kept-
    alive connection whose next request stalls mid-headers is closed too."""
    import socket

    from prometheus_client import CollectorRegistry

    from himari_l3.service import create_app
    from himari_l3.service.server import header_timeout_protocol
    from integration.service.test_hardening import _Served

    cfg = make_config(tmp_path, service={"header_read_timeout_sec": 0.5})
    app = create_app(cfg, registry=CollectorRegistry())
    with _Served(app, http=header_timeout_protocol(cfg.service.header_read_timeout_sec)) as srv:
        stalled = socket.create_connection(("127.0.0.1", srv.port), timeout=10.0)
        kept = None
        try:
            t0 = time.monotonic()
            stalled.sendall(sent)
            health = httpx.get(f"http://127.0.0.1:{srv.port}/healthz", timeout=5.0)
            assert health.status_code == 200
            assert _wait_closed(stalled) == b""
            waited = time.monotonic() - t0
            kept = socket.create_connection(("127.0.0.1", srv.port), timeout=10.0)
            kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: l3\r\n\r\nGET /healthz HTTP/1.1\r\n")
            answered = _wait_closed(kept)
        finally:
            stalled.close()
            if kept is not None:
                kept.close()
    assert 0.4 <= waited < 10.0
    assert answered.startswith(b"HTTP/1.1 200 ") and answered.count(b"HTTP/1.1") == 1
