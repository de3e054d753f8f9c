"""Shared builders for the service tests: request bodies, a config with the store in a temp
folder, a driver that exercises every state-changing endpoint, crashed and restarted apps,
and a store that fails on demand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from himari_l3.config.schema import Layer3Config, parse_config
from himari_l3.persistence import JournalEntry, Store
from himari_l3.service import create_app

SIG: dict[str, Any] = {"strategy_id": "momentum", "symbol": "BTC-USD", "action": "BUY",
                       "confidence": 0.7, "risk_score": 0.3, "regime": "RANGING",
                       "expected_return": 0.02, "predicted_volatility": 0.05}

CAS: dict[str, Any] = {"funding_rate": 0.0001, "oi_change_pct": 0.0, "volume_ratio": 1.0,
                       "onchain_whale_pressure": 0.0, "exchange_netflow_zscore": 0.0}

TOKEN = "s3cret-token-0123456789"

def batch(n: int = 3) -> dict[str, Any]:
    """An allocate body with ``n`` signals over two symbols."""
    syms = ["BTC-USD", "ETH-USD"]
    sigs = [{**SIG, "strategy_id": f"s{i}", "symbol": syms[i % 2]} for i in range(n)]
    return {"signals": sigs, "cascade": {s: dict(CAS) for s in syms},
            "prices": {"BTC-USD": 50_000.0, "ETH-USD": 3_000.0}}


def config(tmp_path: Path, **over: Any) -> Layer3Config:
    """Config with the store in tmp_path, snapshots every 4 entries, plus overrides."""
    data: dict[str, Any] = {"persistence": {"url": f"sqlite:///{tmp_path / 'l3.sqlite'}",
                                            "snapshot_every_decisions": 4}}
    data.update(over)
    return parse_config(Layer3Config, data)


def fills_for(intents: list[dict[str, Any]], share: float = 0.5) -> dict[str, Any]:
    """A fills body filling ``share`` of each intent at its reference price (fee 0.1 %)."""
    return {"fills": [{"symbol": i["symbol"], "side": i["side"],
                       "quantity": i["quantity"] * share, "price": i["reference_price"],
                       "fee": i["quantity"] * share * i["reference_price"] * 0.001,
                       "client_order_id": i["client_order_id"]} for i in intents]}


async def drive(c: httpx.AsyncClient, n: int) -> None:
    """A mixed stream: allocations (both modes, two portfolios) with fills of their
    intents, positions snapshots, both outcome kinds, returns and single sizings."""
    for i in range(n):
        b = batch(3 + i % 4)
        b["signals"][0]["confidence"] = 0.5 + 0.04 * (i % 10)
        b["signals"][-1]["action"] = "SELL" if i % 3 == 0 else "BUY"
        b.update(mode="full" if i % 4 == 3 else "incremental",
                 portfolio="second" if i % 5 == 4 else "default")
        r = await c.post("/v1/allocate", json=b)
        assert r.status_code == 200, r.text
        if r.json()["intents"]:
            f = await c.post("/v1/fills", json=fills_for(r.json()["intents"]))
            assert f.status_code == 200, f.text
        if i % 3 == 2:
            held = (await c.get("/v1/positions")).json()["positions"]
            snap = {s: {"quantity": p["quantity"] * 0.9, "price": p["mark_price"]}
                    for s, p in held.items()}
            assert (await c.put("/v1/positions", json={"positions": snap})).status_code == 200
        r = 0.01 * ((i % 5) - 2)
        await c.post("/v1/outcomes", json={"symbol": "BTC-USD", "realized_return": r})
        await c.post("/v1/outcomes", json={"symbol": "ETH-USD", "realized_return": -r,
                                           "strategy_id": "s1"})
        await c.post("/v1/returns", json={"returns": {"BTC-USD": r, "ETH-USD": r / 2}})
        await c.post("/v1/size", json={"signal": {**SIG, "regime": "CRISIS"}, "cascade": CAS,
                                       "price": 50_000.0})


async def digest(c: httpx.AsyncClient) -> str:
    """The learned-state digest of the app behind ``c``."""
    return str((await c.get("/v1/state", params={"digest": "true"})).json()[
        "learned_state_digest"])


async def crashed_run(cfg: Layer3Config, n: int, **kw: Any) -> tuple[str, int]:
    """Start an app, drive it, and abandon it without shutdown (like a SIGKILL)."""
    app = create_app(cfg, registry=CollectorRegistry(), **kw)
    await app.state.service.start()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://l3") as c:
        await drive(c, n)
        svc = app.state.service
        if svc._snapshot_task is not None:
            await svc._snapshot_task
        svc.snapshot_every = 10**6  # then two entries that only the journal holds
        await c.post("/v1/returns", json={"returns": {"BTC-USD": 0.001}})
        await c.post("/v1/allocate", json=batch(2))
        d = await digest(c)
    svc._ticker.cancel()
    return d, app.state.service.seq


async def restarted(cfg: Layer3Config) -> tuple[str, dict[str, Any]]:
    """Start a fresh app on the same store; its digest and restore info."""
    app = create_app(cfg, registry=CollectorRegistry())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://l3") as c:
            st = (await c.get("/v1/state", params={"digest": "true"})).json()
    return st["learned_state_digest"], st["service"]["restore"]


async def noop() -> None:
    """A stop that does nothing."""


class FlakyStore(Store):
    """A real store whose next ``append`` fails once when ``fail_next`` is set."""

    fail_next = False

    def append(self, entries: list[JournalEntry]) -> None:  # type: ignore[override]
        """Fail once on demand, else append."""
        if self.fail_next:
            self.fail_next = False
            raise OSError("disk full (simulated)")
        super().append(entries)
