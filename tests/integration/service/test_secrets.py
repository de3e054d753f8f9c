"""No secret is persisted, logged or returned (issue 13): the bearer token never reaches the
database file (journal, config changes, snapshots, WAL), the log, ``/v1/state``,
``/metrics`` or an error body; and ``service.protect_read_endpoints`` puts the token in
front of ``/v1/state`` and ``/metrics`` too."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from himari_l3.config.loader import load_config
from himari_l3.service import create_app
from service_support import CAS, SIG, TOKEN, batch, drive

FILE_TOKEN = "file-token-0123456789-abcdef"


def _store_bytes(db: Path) -> dict[str, bytes]:
    """Every file the SQLite store keeps beside ``db`` (database, WAL, shared memory,
    acknowledged-seq record), by name."""
    return {p.name: p.read_bytes() for p in db.parent.iterdir()
            if p.name.startswith(db.name)}


def _leaks(token: str, blobs: dict[str, bytes]) -> list[str]:
    needle = token.encode()
    return sorted(name for name, blob in blobs.items() if needle in blob)


@pytest.mark.parametrize("source", ["file", "env"])
async def test_the_token_is_never_stored_logged_or_returned(
        tmp_path: Path, source: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Requests (authorised and not), a hot reload, snapshots, state and metrics reads and
    error bodies: the token's bytes appear in none of the store's files (read while the
    service runs, with the WAL in use, and after shutdown) nor in the log or a response."""
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "l3.sqlite"
    cfg_path = tmp_path / "layer3.yaml"
    token = FILE_TOKEN if source == "file" else TOKEN
    if source == "env":
        monkeypatch.setenv("HIMARI_L3_AUTH_TOKEN", TOKEN)
        service = ""
    else:
        monkeypatch.delenv("HIMARI_L3_AUTH_TOKEN", raising=False)
        service = f"service:\n  auth_token: '{FILE_TOKEN}'\n"
    base = (f"persistence:\n  url: 'sqlite:///{db}'\n  snapshot_every_decisions: 3\n"
            + service)
    cfg_path.write_text(base)
    app = create_app(load_config(cfg_path), config_path=str(cfg_path),
                     registry=CollectorRegistry())
    bodies: list[str] = []
    headers = {"Authorization": f"Bearer {token}"}
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://l3", headers=headers) as c:
        await drive(c, 3)
        cfg_path.write_text(base + "portfolio_value: 90000.0\n")
        for _ in range(2):  # edited in place: applied once seen unchanged by two polls
            await asyncio.to_thread(app.state.reloader.check_now)
        assert app.state.service.config_version != app.state.service.restore_info
        for h in ({"Authorization": ""}, {"Authorization": "Bearer wrong-token-0123456789"},
                  {"Authorization": token}):
            r = await c.post("/v1/allocate", json=batch(2), headers=h)
            assert r.status_code == 401
            bodies.append(r.text + str(r.headers))
        for bad in ({"signal": SIG}, {"signal": {**SIG, "confidence": 2.0}, "cascade": CAS,
                                      "price": 1.0}):
            r = await c.post("/v1/size", json=bad)
            assert r.status_code == 422
            bodies.append(r.text)
        for path in ("/v1/state?learned=true&digest=true", "/metrics", "/healthz",
                     "/openapi.json"):
            r = await c.get(path)
            assert r.status_code == 200, path
            bodies.append(r.text)
        svc = app.state.service
        if svc._snapshot_task is not None:
            await svc._snapshot_task
        assert svc.last_snapshot_seq > 0
        running = _store_bytes(db)
    assert any(name.endswith("-wal") for name in running)
    assert _leaks(token, running) == []
    assert _leaks(token, _store_bytes(db)) == []
    assert [b for b in bodies if token in b] == []
    assert token not in caplog.text


async def test_read_endpoints_can_require_the_token(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """service.protect_read_endpoints: /v1/state, /metrics and the book's reads need the
    bearer token too; /healthz (liveness probes) and the API documents stay open."""
    monkeypatch.delenv("HIMARI_L3_AUTH_TOKEN", raising=False)
    cfg_path = tmp_path / "layer3.yaml"
    cfg_path.write_text(f"persistence:\n  url: 'sqlite:///{tmp_path / 'l3.sqlite'}'\n"
                        f"service:\n  auth_token: '{TOKEN}'\n"
                        "  protect_read_endpoints: true\n")
    app = create_app(load_config(cfg_path), registry=CollectorRegistry())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://l3") as c:
        for path in ("/v1/state", "/metrics", "/v1/positions", "/v1/intents"):
            r = await c.get(path)
            assert r.status_code == 401, path
            assert r.headers["www-authenticate"] == "Bearer"
            ok = await c.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert ok.status_code == 200, path
        assert (await c.get("/healthz")).status_code == 200
        assert (await c.get("/openapi.json")).status_code == 200


def test_protecting_reads_needs_a_token(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """protect_read_endpoints without a token would protect nothing: a config error."""
    from himari_l3._exceptions import ConfigError

    monkeypatch.delenv("HIMARI_L3_AUTH_TOKEN", raising=False)
    cfg_path = tmp_path / "layer3.yaml"
    cfg_path.write_text("service:\n  protect_read_endpoints: true\n")
    with pytest.raises(ConfigError, match="protect_read_endpoints"):
        load_config(cfg_path)
