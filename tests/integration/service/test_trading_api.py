"""The trading states and the paper executor through HTTP (in-process app, real SQLite):
GET/POST /v1/trading-state, POST /v1/prices, the allocate response's trading_state and paper
fills, closed trades teaching the learners, restore after a crash, the CLI against it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from himari_l3 import ManualClock
from himari_l3.persistence import Store
from himari_l3.service import create_app
from service_support import CAS, SIG, TOKEN, config

pytestmark = pytest.mark.integration

PRICES = {"BTC-USD": 50_000.0, "ETH-USD": 3_000.0}


def body(action: str = "BUY", confidence: float = 0.8, **over: Any) -> dict[str, Any]:
    """An allocate body: one momentum signal per symbol (stamped by the server)."""
    sigs = [{**SIG, "symbol": s, "action": action, "confidence": confidence}
            for s in PRICES]
    return {"signals": sigs, "cascade": {s: dict(CAS) for s in PRICES},
            "prices": dict(PRICES), **over}


class Running:
    """An app with its lifespan entered and a client on it (async context manager)."""

    def __init__(self, cfg: Any, clock: ManualClock | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.app = create_app(cfg, registry=CollectorRegistry(), clock=clock)
        self.headers = headers or {}
        self._ctx = self.app.router.lifespan_context(self.app)

    async def __aenter__(self) -> httpx.AsyncClient:
        await self._ctx.__aenter__()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(self.app),
                                        base_url="http://l3", headers=self.headers)
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        await self._ctx.__aexit__(None, None, None)


async def test_trading_state_starts_active_and_halt_stops_new_exposure(tmp_path: Path) -> None:
    """GET says ACTIVE; POST HALTED is journaled and answered with the new state; an
    allocation then issues no buy; the allocate response carries the trading state."""
    async with Running(config(tmp_path)) as c:
        st = (await c.get("/v1/trading-state")).json()
        assert (st["state"], st["symbols"]) == ("ACTIVE", {})
        assert {"reason", "since", "daily_loss_pct", "drawdown_pct", "limits"} <= st.keys()
        r = await c.post("/v1/trading-state", json={"state": "HALTED", "reason": "drill"})
        assert r.status_code == 200 and r.json()["state"] == "HALTED"
        assert r.json()["reason"] == "manual" and "drill" in r.json()["detail"]
        out = (await c.post("/v1/allocate", json=body())).json()
        assert out["intents"] == [] and out["trading_state"]["state"] == "HALTED"
        # The resume trades toward the standing targets the halted allocation set.
        r = await c.post("/v1/trading-state", json={"state": "ACTIVE", "reason": "done",
                                                    "symbol": None})
        assert {i["side"] for i in r.json()["step"]["intents"]} == {"buy"}
    store = Store(config(tmp_path).persistence.url)
    kinds = [r["kind"] for r in store.book_events()]
    store.close()
    assert kinds.count("trading_state") == 2


async def test_a_symbol_halt_shows_in_symbols(tmp_path: Path) -> None:
    """A symbol's own halt is listed under symbols; the portfolio stays ACTIVE."""
    async with Running(config(tmp_path)) as c:
        await c.post("/v1/trading-state", json={"state": "HALTED", "reason": "venue",
                                                "symbol": "ETH-USD"})
        st = (await c.get("/v1/trading-state")).json()
        assert st["state"] == "ACTIVE" and st["symbols"] == {"ETH-USD": "HALTED"}
        out = (await c.post("/v1/allocate", json=body())).json()
        assert {i["symbol"] for i in out["intents"]} == {"BTC-USD"}


@pytest.mark.parametrize(("payload", "field"), [
    ({"state": "PAUSED", "reason": "x"}, "state"),
    ({"state": "HALTED", "reason": ""}, "reason"),
    ({"state": "HALTED", "reason": "x" * 201}, "reason"),
    ({"state": "HALTED"}, "reason"),
    ({"state": "HALTED", "reason": "x", "symbol": ""}, "symbol"),
    ({"state": "HALTED", "reason": "x", "colour": "red"}, "colour"),
    ({"state": "HALTED", "reason": "bad\ttab"}, "reason"),
])
async def test_bad_commands_are_422_naming_the_field(tmp_path: Path, payload: dict[str, Any],
                                                     field: str) -> None:
    """A malformed command is a 422 whose loc names the field; nothing is journaled."""
    async with Running(config(tmp_path)) as c:
        r = await c.post("/v1/trading-state", json=payload)
        assert r.status_code == 422, r.text
        assert field in json.dumps(r.json()["detail"])
        assert (await c.get("/v1/trading-state")).json()["state"] == "ACTIVE"


async def test_commands_need_the_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a token configured, POST without it is 401; GET stays open."""
    monkeypatch.setenv("HIMARI_L3_AUTH_TOKEN", TOKEN)
    async with Running(config(tmp_path)) as c:
        r = await c.post("/v1/trading-state", json={"state": "HALTED", "reason": "x"})
        assert r.status_code == 401
        assert (await c.get("/v1/trading-state")).status_code == 200
        r = await c.post("/v1/trading-state", json={"state": "HALTED", "reason": "x"},
                         headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200


async def test_paper_fills_its_own_intents_and_learns_from_closed_trades(
        tmp_path: Path) -> None:
    """execution.paper: the allocation's intents are filled at once (fills journaled,
    positions visible); selling closes the trade, which teaches the strategy's learners
    without any POST /v1/outcomes."""
    cfg = config(tmp_path, execution={"paper": True})
    async with Running(cfg) as c:
        out = (await c.post("/v1/allocate", json=body())).json()
        fills = out["paper"]["fills"]
        assert {f["symbol"] for f in fills} == set(PRICES) and out["paper"]["paper_id"] == \
            out["decision_id"] + 1
        pos = (await c.get("/v1/positions")).json()
        assert pos["open_intents"] == 0 and pos["fees_paid"] > 0
        for f in fills:
            assert pos["positions"][f["symbol"]]["quantity"] == pytest.approx(f["quantity"])
        up = {"BTC-USD": 51_000.0, "ETH-USD": 3_100.0}
        out = (await c.post("/v1/allocate", json={**body("SELL"), "prices": up})).json()
        trades = out["paper"]["closed_trades"]
        assert {t["symbol"] for t in trades} == set(PRICES)
        assert all(t["realized_return"] > 0 for t in trades)
        learned = (await c.get("/v1/state", params={"learned": "true"})).json()
        kelly = learned["learned_state"]["phase2"]["phase1"]["kelly"]
        assert {kelly[f"momentum\x1f{s}"]["n"] for s in PRICES} == {1}
    store = Store(cfg.persistence.url)
    assert [r["kind"] for r in store.book_events()] == ["paper", "paper"]
    assert store.outcomes() == []  # nothing hand-posted
    store.close()


async def test_prices_mark_the_book_and_fill_with_latency(tmp_path: Path) -> None:
    """latency_bars 1: the allocation's own prices do not fill; the next POST /v1/prices
    does, at its prices, with impact from the given volume."""
    cfg = config(tmp_path, execution={"paper": True, "fill_model": {"latency_bars": 1}})
    async with Running(cfg) as c:
        out = (await c.post("/v1/allocate", json=body())).json()
        assert out["paper"]["fills"] == [] and len(out["intents"]) == 2
        r = await c.post("/v1/prices", json={"prices": {"BTC-USD": 50_500.0,
                                                        "ETH-USD": 3_030.0},
                                             "volumes": {"BTC-USD": 1_000.0,
                                                         "ETH-USD": 10_000.0}})
        assert r.status_code == 200
        fills = r.json()["paper"]["fills"]
        assert {f["reference_price"] for f in fills} == {50_500.0, 3_030.0}
        assert all(f["slippage_bps"] > 2.0 for f in fills)  # impact on top of 2 bps
        bad = await c.post("/v1/prices", json={"prices": {"BTC-USD": -1.0}})
        assert bad.status_code == 422 and "prices" in json.dumps(bad.json()["detail"])


async def test_a_halt_flattens_through_the_paper_executor(tmp_path: Path) -> None:
    """HALTED on a paper service: closes issued at once, filled at the next observation."""
    cfg = config(tmp_path, execution={"paper": True})
    async with Running(cfg) as c:
        await c.post("/v1/allocate", json=body())
        r = (await c.post("/v1/trading-state", json={"state": "HALTED",
                                                     "reason": "kill"})).json()
        assert {(i["side"], i["reduce_only"]) for i in r["step"]["intents"]} == {
            ("sell", True)}
        await c.post("/v1/prices", json={"prices": PRICES})
        pos = (await c.get("/v1/positions")).json()
        assert all(p["quantity"] == 0.0 for p in pos["positions"].values())


async def test_daily_loss_trips_by_itself(tmp_path: Path) -> None:
    """Positions bought, prices fall 30 %: the next prices request halts the portfolio
    (daily_loss) and flattens it."""
    cfg = config(tmp_path, execution={"paper": True},
                 sizing={"kelly": {"report_strength": 10_000.0}})
    async with Running(cfg) as c:
        await c.post("/v1/allocate", json=body(confidence=0.95))
        down = {s: p * 0.7 for s, p in PRICES.items()}
        r = (await c.post("/v1/prices", json={"prices": down})).json()
        assert r["trading_state"]["state"] == "HALTED"
        assert r["trading_state"]["reason"] == "daily_loss"
        st = (await c.get("/v1/trading-state")).json()
        assert st["daily_loss_pct"] >= 0.03


async def test_trading_state_and_paper_book_are_restored_after_a_crash(tmp_path: Path) -> None:
    """Abandon a paper service mid-stream (no shutdown, no final snapshot): a new one on
    the same store has the same learned state digest, trading state and positions."""
    cfg = config(tmp_path, execution={"paper": True},
                 persistence={"url": f"sqlite:///{tmp_path / 'l3.sqlite'}",
                              "snapshot_every_decisions": 5})
    app = create_app(cfg, registry=CollectorRegistry())
    await app.state.service.start()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://l3") as c:
        for i in range(6):
            await c.post("/v1/allocate", json=body("SELL" if i % 3 == 2 else "BUY",
                                                   0.6 + 0.05 * i))
            await c.post("/v1/prices", json={"prices": {s: p * (1 + 0.01 * i)
                                                        for s, p in PRICES.items()}})
        svc = app.state.service
        if svc._snapshot_task is not None:
            await svc._snapshot_task
        svc.snapshot_every = 10**6  # what follows is only in the journal
        await c.post("/v1/trading-state", json={"state": "REDUCING", "reason": "wind down"})
        await c.post("/v1/trading-state", json={"state": "HALTED", "reason": "venue",
                                                "symbol": "ETH-USD"})
        await c.post("/v1/allocate", json=body())
        await c.post("/v1/prices", json={"prices": PRICES})
        before = (await c.get("/v1/state", params={"digest": "true"})).json()
        trading = (await c.get("/v1/trading-state")).json()
        positions = (await c.get("/v1/positions")).json()
    svc._ticker.cancel()
    assert before["service"]["last_snapshot_seq"] < before["service"]["journal_seq"]
    async with Running(cfg) as c:
        after = (await c.get("/v1/state", params={"digest": "true"})).json()
        assert after["learned_state_digest"] == before["learned_state_digest"]
        assert (await c.get("/v1/trading-state")).json() == trading
        assert (await c.get("/v1/positions")).json() == positions


STORM: dict[str, Any] = {"funding_rate": 0.01, "oi_change_pct": -0.5, "volume_ratio": 6.0,
                         "onchain_whale_pressure": 1.0, "exchange_netflow_zscore": 6.0}


async def test_stale_signals_make_the_symbol_reduce_only_until_fresh(tmp_path: Path) -> None:
    """A signal stamped more than stale_after_sec (default 5 s) before the request time:
    its symbol turns REDUCING (no buy for it) and the reply says so; fresh data lifts it."""
    clock = ManualClock()
    async with Running(config(tmp_path), clock=clock) as c:
        old = body()
        old["signals"][0]["timestamp_ns"] = clock.time_ns() - 6_000_000_000  # BTC-USD, 6 s
        out = (await c.post("/v1/allocate", json=old)).json()
        assert out["trading_state"]["symbols"] == {"BTC-USD": "REDUCING"}
        assert {i["symbol"] for i in out["intents"]} == {"ETH-USD"}
        st = (await c.get("/v1/trading-state")).json()
        assert st["symbol_details"]["BTC-USD"]["reason"] == "stale_data"
        edge = body()
        edge["signals"][0]["timestamp_ns"] = clock.time_ns() - 4_000_000_000  # 4 s: fresh
        out = (await c.post("/v1/allocate", json=edge)).json()
        assert out["trading_state"]["symbols"] == {}
        assert "BTC-USD" in {i["symbol"] for i in out["intents"]}


async def test_a_cascade_exit_halts_that_symbol(tmp_path: Path) -> None:
    """A cascade reading that recommends EXIT halts its symbol (latched: a calm reading
    next does not lift it without a cool-down or an operator); the others trade on."""
    async with Running(config(tmp_path)) as c:
        storm = body()
        storm["cascade"]["ETH-USD"] = dict(STORM)
        out = (await c.post("/v1/allocate", json=storm)).json()
        assert out["trading_state"]["symbols"] == {"ETH-USD": "HALTED"}
        st = (await c.get("/v1/trading-state")).json()
        assert (st["state"], st["symbol_details"]["ETH-USD"]["reason"]) == (
            "ACTIVE", "cascade_exit")
        out = (await c.post("/v1/allocate", json=body())).json()  # calm again
        assert out["trading_state"]["symbols"] == {"ETH-USD": "HALTED"}
        assert {i["symbol"] for i in out["intents"]} <= {"BTC-USD"}
        await c.post("/v1/trading-state", json={"state": "ACTIVE", "reason": "checked",
                                                "symbol": "ETH-USD"})
        assert (await c.get("/v1/trading-state")).json()["symbols"] == {}


async def test_drawdown_from_the_peak_halts(tmp_path: Path) -> None:
    """With the daily limit out of the way, a 20 % fall of equity from the peak halts the
    portfolio with reason drawdown (default max_drawdown_pct 0.15)."""
    cfg = config(tmp_path, execution={"paper": True},
                 trading_state={"daily_loss_limit_pct": 1.0},
                 sizing={"kelly": {"report_strength": 10_000.0}})
    async with Running(cfg) as c:
        await c.post("/v1/allocate", json=body(confidence=0.95))
        st = (await c.get("/v1/trading-state")).json()
        assert st["limits"]["max_drawdown_pct"] == 0.15 and st["state"] == "ACTIVE"
        gross = (await c.get("/v1/positions")).json()["gross_exposure_pct"]
        fall = 20.0 / gross  # long only (gross in %): equity falls by gross x the fall
        assert fall < 0.9, gross
        down = {s: p * (1.0 - fall) for s, p in PRICES.items()}
        r = (await c.post("/v1/prices", json={"prices": down})).json()
        assert (r["trading_state"]["state"], r["trading_state"]["reason"]) == (
            "HALTED", "drawdown")
        assert (await c.get("/v1/trading-state")).json()["drawdown_pct"] >= 0.15


async def test_freeze_keeps_positions_and_a_cooldown_resumes(tmp_path: Path) -> None:
    """halt_action freeze: a daily-loss halt issues no intent and the positions stay; with
    cooldown_sec 60 the trip is lifted at the first request after 60 s once the loss no
    longer holds (a loss still beyond the limit keeps it)."""
    clock = ManualClock()
    cfg = config(tmp_path, execution={"paper": True},
                 trading_state={"halt_action": "freeze", "cooldown_sec": 60.0},
                 sizing={"kelly": {"report_strength": 10_000.0}})
    async with Running(cfg, clock=clock) as c:
        await c.post("/v1/allocate", json=body(confidence=0.95))
        held = (await c.get("/v1/positions")).json()["positions"]
        down = {s: p * 0.7 for s, p in PRICES.items()}
        r = (await c.post("/v1/prices", json={"prices": down})).json()
        assert r["trading_state"]["state"] == "HALTED" and r["intents"] == []
        pos = (await c.get("/v1/positions")).json()
        assert {s: p["quantity"] for s, p in pos["positions"].items()} == {
            s: p["quantity"] for s, p in held.items()}
        assert pos["open_intents"] == 0
        clock.advance(61.0)
        r = (await c.post("/v1/prices", json={"prices": down})).json()
        assert r["trading_state"]["state"] == "HALTED"  # the loss still holds
        clock.advance(61.0)
        r = (await c.post("/v1/prices", json={"prices": PRICES})).json()
        assert (r["trading_state"]["state"], r["trading_state"]["reason"]) == (
            "ACTIVE", "cooldown")
