"""The HTTP API in-process (httpx.ASGITransport, real SQLite file): every endpoint, every
4xx names the field, auth, limits, OpenAPI, metrics."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from himari_l3.config.schema import Layer3Config, parse_config
from himari_l3.persistence import Store
from himari_l3.service import create_app
from service_support import CAS, SIG, TOKEN, batch


def make_config(tmp_path: Path, **service: Any) -> Layer3Config:
    """Defaults with the store in ``tmp_path`` and service overrides."""
    return parse_config(Layer3Config, {
        "persistence": {"url": f"sqlite:///{tmp_path / 'l3.sqlite'}"},
        "service": service})


async def _client(cfg: Layer3Config, **kw: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(cfg, registry=CollectorRegistry(), **kw)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://l3") as c:
            c.app = app  # type: ignore[attr-defined]
            yield c


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app with default limits and no token."""
    async for c in _client(make_config(tmp_path)):
        yield c


@pytest.fixture
async def authed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[
        httpx.AsyncClient]:
    """A client of an app that requires a bearer token, with small limits."""
    monkeypatch.delenv("HIMARI_L3_AUTH_TOKEN", raising=False)
    cfg = make_config(tmp_path, auth_token=TOKEN, max_request_bytes=4096,
                      max_signals_per_request=5)
    async for c in _client(cfg):
        yield c


def loc_of(r: httpx.Response) -> list[Any]:
    """The ``loc`` of the first error of a 4xx body."""
    return list(r.json()["detail"][0]["loc"])


async def test_size_returns_decision_and_stores_it(client: httpx.AsyncClient) -> None:
    """POST /v1/size sizes one signal, answers with an id and stores the audit record."""
    r = await client.post("/v1/size", json={"signal": SIG, "cascade": CAS, "price": 50_000.0})
    assert r.status_code == 200
    body = r.json()
    assert body["position_size_usd"] > 0 and body["diagnostics"]["binding_limit"]
    store: Store = client.app.state.service.store  # type: ignore[attr-defined]
    rows = store.decisions()
    assert [d["seq"] for d in rows] == [body["decision_id"]]
    assert rows[0]["kind"] == "size" and rows[0]["response"]["decision_id"] == body[
        "decision_id"]


async def test_allocate_returns_allocation_path_and_trace(client: httpx.AsyncClient) -> None:
    """POST /v1/allocate runs Phase 3 and stores request, response, trace and path."""
    r = await client.post("/v1/allocate", json=batch(4))
    assert r.status_code == 200
    body = r.json()
    assert set(body["allocations"]) == {"BTC-USD", "ETH-USD"}
    assert body["path"] == "baseline" and "rl" in body["trace"]
    rec = client.app.state.service.store.decisions()[-1]  # type: ignore[attr-defined]
    assert rec["kind"] == "allocate" and rec["path"] == "baseline"
    assert rec["trace"]["rl"]["enabled"] is False
    assert len(rec["request"]["signals"]) == 4 and rec["config_version"]


async def test_outcomes_both_kinds(client: httpx.AsyncClient) -> None:
    """POST /v1/outcomes teaches a strategy (with strategy_id) or a path (without)."""
    await client.post("/v1/allocate", json=batch(2))
    r1 = await client.post("/v1/outcomes", json={"symbol": "BTC-USD", "realized_return": 0.01,
                                                 "strategy_id": "s0"})
    r2 = await client.post("/v1/outcomes", json={"symbol": "BTC-USD", "realized_return": -0.02})
    assert r1.status_code == r2.status_code == 200
    assert r1.json()["learned"]["trades"] == 1
    assert r2.json()["used_rl"] is False
    assert r2.json()["performance"]["baseline"]["trades"] == 1


async def test_returns_feed_the_correlation_monitor(client: httpx.AsyncClient) -> None:
    """POST /v1/returns adds a row; GET /v1/state shows the observations."""
    for i in range(3):
        r = await client.post("/v1/returns", json={"returns": {"BTC-USD": 0.01 * i,
                                                               "ETH-USD": -0.01 * i}})
        assert r.status_code == 200
    state = (await client.get("/v1/state")).json()
    assert state["hybrid"]["phase2"]["correlation"]["observations"] == 3


async def test_state_health_and_digest(client: httpx.AsyncClient) -> None:
    """GET /v1/state reports the journal position, learned state and digest; healthz ok."""
    await client.post("/v1/allocate", json=batch(2))
    st = (await client.get("/v1/state", params={"learned": "true", "digest": "true"})).json()
    assert st["service"]["journal_seq"] >= 2 and len(st["learned_state_digest"]) == 64
    assert st["learned_state"]["counters"]["total"] == 1
    h = await client.get("/healthz")
    assert h.status_code == 200 and h.json()["status"] == "ok"


@pytest.mark.parametrize(("mutate", "loc"), [
    (lambda b: b["signals"][0].update(confidence=1.7), ["body", "signals", 0, "confidence"]),
    (lambda b: b["signals"][1].update(action="BUYY"), ["body", "signals", 1, "action"]),
    (lambda b: b["signals"][0].pop("risk_score"), ["body", "signals", 0, "risk_score"]),
    (lambda b: b["signals"][0].update(confidence="high"), ["body", "signals", 0, "confidence"]),
    (lambda b: b["signals"][0].update(predicted_volatility=-1.0),
     ["body", "signals", 0, "predicted_volatility"]),
    (lambda b: b["signals"][0].update(extra=1), ["body", "signals", 0, "extra"]),
    (lambda b: b["prices"].update({"BTC-USD": -5.0}), ["body", "prices", "BTC-USD"]),
    (lambda b: b["prices"].pop("ETH-USD"), ["body", "prices", "ETH-USD"]),
    (lambda b: b["cascade"].pop("BTC-USD"), ["body", "cascade", "BTC-USD"]),
    (lambda b: b["cascade"]["BTC-USD"].update(onchain_whale_pressure=3.0),
     ["body", "cascade", "BTC-USD", "onchain_whale_pressure"]),
    (lambda b: b.pop("prices"), ["body", "prices"]),
])
async def test_allocate_bad_fields_are_422_naming_the_field(
        client: httpx.AsyncClient, mutate: Any, loc: list[Any]) -> None:
    """Out-of-range, missing, mistyped and unknown fields give 422 with the field's path."""
    body = batch(2)
    mutate(body)
    r = await client.post("/v1/allocate", json=body)
    assert r.status_code == 422, r.text
    assert loc_of(r) == loc


async def test_nan_and_infinity_are_422(client: httpx.AsyncClient) -> None:
    """NaN / Infinity tokens (accepted by Python's JSON parser) are refused per field."""
    text = json.dumps(batch(1)).replace('"confidence": 0.7', '"confidence": NaN')
    r = await client.post("/v1/allocate", content=text,
                          headers={"content-type": "application/json"})
    assert r.status_code == 422 and loc_of(r) == ["body", "signals", 0, "confidence"]
    r = await client.post("/v1/returns", content='{"returns": {"BTC-USD": Infinity}}',
                          headers={"content-type": "application/json"})
    assert r.status_code == 422 and loc_of(r) == ["body", "returns", "BTC-USD"]


async def test_other_endpoints_name_fields(client: httpx.AsyncClient) -> None:
    """size, outcomes and returns map range errors onto their own body fields."""
    r = await client.post("/v1/size", json={"signal": SIG, "cascade": CAS, "price": 0.0})
    assert r.status_code == 422 and loc_of(r) == ["body", "price"]
    r = await client.post("/v1/outcomes", json={"symbol": "X", "realized_return": 50.0})
    assert r.status_code == 422 and loc_of(r) == ["body", "realized_return"]
    r = await client.post("/v1/outcomes", json={"symbol": "X", "realized_return": 0.1,
                                                "strategy_id": "a", "predicted_volatility": 0})
    assert r.status_code == 422 and loc_of(r) == ["body", "predicted_volatility"]
    r = await client.post("/v1/returns", json={"returns": {"BTC-USD": -3.0}})
    assert r.status_code == 422 and loc_of(r) == ["body", "returns", "BTC-USD"]
    r = await client.post("/v1/returns", content=b"{not json",
                          headers={"content-type": "application/json"})
    assert r.status_code == 422


async def test_rejected_requests_change_nothing(client: httpx.AsyncClient) -> None:
    """A 422 is neither journaled nor applied to the learned state."""
    before = (await client.get("/v1/state", params={"digest": "true"})).json()
    body = batch(2)
    body["signals"][1]["confidence"] = 2.0
    assert (await client.post("/v1/allocate", json=body)).status_code == 422
    after = (await client.get("/v1/state", params={"digest": "true"})).json()
    assert after["learned_state_digest"] == before["learned_state_digest"]
    assert after["service"]["journal_seq"] == before["service"]["journal_seq"]


async def test_auth_token_protects_posts(authed: httpx.AsyncClient) -> None:
    """POSTs need the bearer token (401 without or wrong); GETs stay open."""
    body = batch(2)
    assert (await authed.post("/v1/allocate", json=body)).status_code == 401
    bad = {"Authorization": "Bearer wrong-token-0123456789"}
    assert (await authed.post("/v1/allocate", json=body, headers=bad)).status_code == 401
    ok = {"Authorization": f"Bearer {TOKEN}"}
    assert (await authed.post("/v1/allocate", json=body, headers=ok)).status_code == 200
    assert (await authed.get("/v1/state")).status_code == 200


async def test_limits_body_size_and_signal_count(authed: httpx.AsyncClient) -> None:
    """Bodies over max_request_bytes get 413; more signals than allowed get 422."""
    ok = {"Authorization": f"Bearer {TOKEN}"}
    big = batch(2)
    big["pad"] = "x" * 10_000
    r = await authed.post("/v1/allocate", json=big, headers=ok)
    assert r.status_code == 413 and loc_of(r) == ["body"]
    r = await authed.post("/v1/allocate", json=batch(6), headers=ok)
    assert r.status_code == 422 and loc_of(r) == ["body", "signals"]


async def test_openapi_lists_every_endpoint(client: httpx.AsyncClient) -> None:
    """/openapi.json documents every endpoint of the API."""
    spec = (await client.get("/openapi.json")).json()
    assert {"/v1/size", "/v1/allocate", "/v1/outcomes", "/v1/returns", "/v1/fills",
            "/v1/positions", "/v1/intents", "/v1/state", "/metrics",
            "/healthz"} <= set(spec["paths"])
    assert {"get", "put"} <= set(spec["paths"]["/v1/positions"])
    assert (await client.get("/docs")).status_code == 200


async def test_metrics_move_with_requests(client: httpx.AsyncClient) -> None:
    """/metrics exposes himari_l3_ families; request, persistence and decision ones move."""
    def value(text: str, prefix: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(prefix))

    before = (await client.get("/metrics")).text
    await client.post("/v1/allocate", json=batch(3))
    await client.post("/v1/allocate", json={"signals": []})
    after = (await client.get("/metrics")).text
    assert "himari_l3_http_requests_total" in after
    for prefix in ('himari_l3_http_requests_total{code="200",endpoint="/v1/allocate"}',
                   'himari_l3_http_requests_total{code="422",endpoint="/v1/allocate"}',
                   "himari_l3_http_request_duration_seconds_count",
                   'himari_l3_persistence_writes_total{kind="decision"}',
                   "himari_l3_persistence_write_duration_seconds_count",
                   "himari_l3_decisions_total"):
        assert value(after, prefix) > value(before, prefix), prefix
    assert value(after, "himari_l3_state_snapshots_total") >= 1


async def test_two_apps_in_one_process_do_not_collide(tmp_path: Path) -> None:
    """Each app has its own registry: a second app in the same process starts cleanly."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async for a in _client(make_config(tmp_path / "a")):
        async for b in _client(make_config(tmp_path / "b")):
            assert (await a.post("/v1/allocate", json=batch(1))).status_code == 200
            assert (await b.get("/metrics")).status_code == 200
