"""Every registered ``himari_l3_*`` family is written by some code path (the process /
python collectors on the same registry are prometheus_client's, read at scrape time).

One scenario drives the real service app (in-process, real SQLite file, mock RL with a
failure rate that trips the breaker, fills of the book's intents — some at prices off the
mark, some re-sent —, positions snapshots that cut the cash, a config file that is reloaded
and then broken, a store that fails once) and then reads ``GET /metrics`` as Prometheus
would. A family that
no code path writes fails the test by name.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from himari_l3 import Layer3Metrics, ManualClock
from himari_l3.config.schema import Layer3Config, parse_config
from himari_l3.service import create_app
from service_support import CAS, SIG, FlakyStore

SYMS = ["BTC-USD", "ETH-USD", "SOL-USD"]
# Written by the stream loop, not the HTTP service: tests/integration/streams/
# test_stream_metrics.py drives them the same way.
STREAM_LOOP_FAMILIES = ("himari_l3_stream_", "himari_l3_layer1_", "himari_l3_lease_")
REGIMES = ["RANGING", "TRENDING_UP", "RANGING", "CRISIS", "RANGING", "RANGING", "RANGING",
           "HIGH_VOLATILITY", "TRENDING_DOWN", "RANGING"]


def _config_data(tmp_path: Path) -> dict[str, Any]:
    return {
        # (a symbol cap under the three symbols traded: evictions are counted)
        "sizing": {"limits": {"allow_short": True, "max_position_pct": 0.01},
                   "retention": {"max_symbols": 2}},
        # tight budgets: before outcomes prove an edge the sceptical Kelly prior keeps sizes
        # near 1 % of equity, and the scenario must still see budgets scale down and clip RL
        "portfolio": {"max_position_pct": 0.01, "max_strategy_pct": 0.02,
                      "max_portfolio_pct": 0.04},
        "rl": {"enabled": True, "use_mock": True, "mock_success_rate": 0.6, "mock_seed": 5},
        "circuit_breaker": {"failure_threshold": 3, "initial_timeout_sec": 5.0},
        # A band (0.4 % of equity) wider than a 25 % move of a position at its 1 % cap: the
        # move stays inside the band, breaches the cap, and the book repairs it.
        "execution": {"no_trade_band_pct": 0.004,
                      # The paper executor fills from the next observation on, at most 10 %
                      # of its volume; IOC gives its rests up (the book cancels them).
                      "paper": True, "time_in_force": "IOC",
                      "fill_model": {"latency_bars": 1}},
        "persistence": {"url": f"sqlite:///{tmp_path / 'l3.sqlite'}",
                        "snapshot_every_decisions": 5},
        "service": {"config_watch_interval_sec": 3600.0},
    }


def _batch(i: int) -> dict[str, Any]:
    """Strong and weak, long and short signals from several strategies, a stressed symbol
    now and then, and a stale duplicate signal on some batches."""
    sigs = []
    for k, strat in enumerate(["momentum", "carry", "meanrev", "breakout"][: 2 + i % 3]):
        for j, sym in enumerate(SYMS):
            action = "SELL" if (k + j + i) % 4 == 0 else ("STRONG_BUY" if k == 0 else "BUY")
            sigs.append({**SIG, "strategy_id": strat, "symbol": sym, "action": action,
                         "confidence": 0.95 if k == 0 else 0.55 + 0.05 * j,
                         "expected_return": 0.06 if k == 0 else 0.01,
                         "predicted_volatility": 0.01 if k == 0 else 0.05,
                         "regime": REGIMES[(i + j) % len(REGIMES)],
                         "sentiment_score": 0.9 if j == 0 else 0.2,
                         "sentiment_confidence": 0.8})
    stress = min(1.0, 0.3 * (i % 4))
    cascade = {s: dict(CAS) for s in SYMS}
    cascade["SOL-USD"] = {**CAS, "funding_rate": 0.002 * stress, "oi_change_pct": -0.2 * stress,
                          "volume_ratio": 1 + 4 * stress, "onchain_whale_pressure": stress,
                          "exchange_netflow_zscore": 4 * stress}
    prices = {"BTC-USD": 50_000.0, "ETH-USD": 3_000.0, "SOL-USD": 150.0}
    if i % 5 == 4:  # a stale duplicate: dropped with its reason, the rest allocated
        sigs.append({**sigs[0], "timestamp_ns": 1, "confidence": 0.31})
    return {"signals": sigs, "cascade": cascade, "prices": prices}


async def _fill_and_reconcile(c: httpx.AsyncClient, i: int,
                              intents: list[dict[str, Any]]) -> None:
    """Fill the intents (at a price 25 % off the mark every third time, so a position held
    at its cap breaches it and the book repairs), re-send some fills, and now and then
    take a positions snapshot that cuts the cash (the standing targets no longer fit)."""
    if intents:
        move = 1.25 if i % 3 == 0 else 1.0
        body = {"fills": [{"symbol": x["symbol"], "side": x["side"],
                           "quantity": x["quantity"], "price": x["reference_price"] * move,
                           "fee": 0.5, "client_order_id": x["client_order_id"]}
                          for x in intents]}
        assert (await c.post("/v1/fills", json=body)).status_code == 200
        if i % 5 == 0:
            again = (await c.post("/v1/fills", json=body)).json()
            assert set(again["results"]) == {"duplicate"}
    if i % 7 == 6:
        view = (await c.get("/v1/positions")).json()
        snap = {s: {"quantity": p["quantity"] * 1.1} for s, p in view["positions"].items()}
        r = await c.put("/v1/positions", json={"positions": snap, "cash": view["cash"] * 0.8})
        assert r.status_code == 200, r.text


def _exposed_written(text: str) -> dict[str, bool]:
    """Family name -> whether any of its samples shows it was written."""
    out: dict[str, bool] = {}
    for fam in text_string_to_metric_families(text):
        written = False
        for s in fam.samples:
            moved = ((fam.type == "counter" and s.name.endswith("_total"))
                     or (fam.type == "histogram" and s.name.endswith("_count")))
            if moved:
                written |= s.value > 0
            elif fam.type in ("gauge", "info"):
                written = True  # a gauge exists only once set (labelled) or is set to a value
        out[fam.name] = out.get(fam.name, False) or written
    return out


async def test_every_registered_family_is_written(tmp_path: Path) -> None:
    """After one realistic scenario through the service, no family is left unwritten."""
    data = _config_data(tmp_path)
    cfg = parse_config(Layer3Config, data)
    path = tmp_path / "layer3.yaml"
    path.write_text(yaml.safe_dump(data))
    clock = ManualClock()
    store = FlakyStore(cfg.persistence.url)
    app = create_app(cfg, config_path=str(path), registry=CollectorRegistry(), store=store,
                     clock=clock)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://l3") as c:
        for i in range(30):
            clock.advance(2.0)
            r = await c.post("/v1/allocate", json=_batch(i))
            assert r.status_code == 200, r.text
            if i % 2 == 0:  # Layer 4 reports fills (the paper executor drops those intents)
                await _fill_and_reconcile(c, i, r.json()["intents"])
            else:  # the paper executor fills part of them at posted prices and volumes
                r = await c.post("/v1/prices", json={
                    "prices": _batch(i)["prices"],
                    "volumes": {"BTC-USD": 0.05, "ETH-USD": 1.0, "SOL-USD": 20.0}})
                assert r.status_code == 200, r.text
            if i in (10, 12):  # an operator halts one symbol, then resumes it
                r = await c.post("/v1/trading-state", json={
                    "state": "HALTED" if i == 10 else "ACTIVE", "reason": "drill",
                    "symbol": "ETH-USD"})
                assert r.status_code == 200, r.text
            for sym in SYMS:
                await c.post("/v1/outcomes", json={"symbol": sym, "used_rl": i % 2 == 0,
                                                   "realized_return": 0.01 * ((i % 7) - 3)})
            await c.post("/v1/outcomes", json={"symbol": "BTC-USD", "strategy_id": "momentum",
                                               "realized_return": 0.02 * ((i % 5) - 2),
                                               "predicted_return": 0.01,
                                               "predicted_volatility": 0.02})
            await c.post("/v1/returns", json={"returns": {
                "BTC-USD": 0.01 * ((i % 6) - 3), "ETH-USD": 0.012 * ((i % 6) - 3),
                "SOL-USD": 0.02 * ((i % 4) - 1.5)}})
            r = await c.post("/v1/size", json={"signal": {**SIG, "regime": REGIMES[i % 10]},
                                               "cascade": CAS, "price": 50_000.0})
            assert r.status_code == 200
        # a bad request and a failed commit
        assert (await c.post("/v1/size", json={"signal": {**SIG, "confidence": 2.0},
                                               "cascade": CAS, "price": 1.0})).status_code == 422
        store.fail_next = True
        assert (await c.post("/v1/allocate", json=_batch(0))).status_code == 503
        # a good config reload, then a broken one
        data["sizing"]["kelly"] = {"fraction": 0.2}
        path.write_text(yaml.safe_dump(data))
        # The watcher thread applies through the event loop; check from a thread as it does.
        # An edit in place is judged on the second poll that sees it unchanged.
        assert (await asyncio.to_thread(app.state.reloader.check_now)).status == "pending"
        assert (await asyncio.to_thread(app.state.reloader.check_now)).status == "success"
        path.write_text("sizing:\n  kelly:\n    fractoin: 0.2\n")
        assert (await asyncio.to_thread(app.state.reloader.check_now)).status == "pending"
        assert (await asyncio.to_thread(app.state.reloader.check_now)).status == "failure"
        service = app.state.service
        if service._snapshot_task is not None:
            await service._snapshot_task
        text = (await c.get("/metrics")).text

    written = _exposed_written(text)
    # The text format names an Info family by its sample, <name>_info.
    families = sorted(m.name + ("_info" if m.type == "info" else "")
                      for m in Layer3Metrics(CollectorRegistry()).registry.collect()
                      if m.name.startswith("himari_l3_")  # not the process collectors
                      and not m.name.startswith(STREAM_LOOP_FAMILIES))
    assert len(families) >= 45
    missing = [f for f in families if not written.get(f, False)]
    assert missing == [], f"families never written by the scenario: {missing}"
