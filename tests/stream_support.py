"""Builders for the stream tests: a config with names of its own, Layer 2 messages, Layer 1
data, the output stream read back, and an in-process loop over a real Redis and SQLite."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import redis
from prometheus_client import CollectorRegistry

from himari_l3 import ManualClock
from himari_l3.bootstrap.service import build_service
from himari_l3.config.schema import Layer3Config, parse_config
from himari_l3.persistence import Store
from himari_l3.runtime.service import SizingService
from himari_l3.streams.loop import LiveLoop
from himari_l3.streams.run import open_redis

SYMBOLS = {"BTCUSDT": "BTC-USD", "ETHUSDT": "ETH-USD", "SOLUSDT": "SOL-USD"}
PRICES = {"BTCUSDT": 50_000.0, "ETHUSDT": 3_000.0, "SOLUSDT": 150.0}


def stream_settings(tmp_path: Path, redis_url: str, **streams: Any) -> dict[str, Any]:
    """Config data whose stream and key names no other test uses."""
    tag = uuid.uuid4().hex[:10]
    s: dict[str, Any] = {
        "redis_url": redis_url, "input_stream": f"t{tag}:in", "output_stream": f"t{tag}:out",
        "output_channel": f"t{tag}:announce", "dead_letter_stream": f"t{tag}:dead",
        "consumer_group": f"g{tag}", "consumer_name": "loop-1",
        "prices_key": f"t{tag}:prices", "cascade_key": f"t{tag}:cascade:{{symbol}}",
        "symbol_map": dict(SYMBOLS), "tick_ms": 5, "lease_ttl_ms": 1000}
    s.update(streams)
    tmp_path.mkdir(parents=True, exist_ok=True)
    return {"persistence": {"url": f"sqlite:///{tmp_path / 'l3.sqlite'}",
                            "snapshot_every_decisions": 20},
            "service": {"config_watch_interval_sec": 3600.0, "port": 0},
            "sizing": {"limits": {"allow_short": True}},
            "streams": s}


def stream_config(tmp_path: Path, redis_url: str, **streams: Any) -> Layer3Config:
    return parse_config(Layer3Config, stream_settings(tmp_path, redis_url, **streams))


def l2(now_ms: int, symbol: str = "BTCUSDT", direction: int = 1, **kw: Any) -> dict[str, str]:
    """A Layer 2 message in its field form (strings, as XADD stores them)."""
    msg = {"timestamp": str(now_ms), "symbol": symbol, "direction": str(direction),
           "direction_label": ["FLAT", "LONG", "SHORT"][direction], "confidence": "0.8",
           "prob_flat": "0.1", "prob_long": "0.8" if direction == 1 else "0.1",
           "prob_short": "0.1" if direction == 1 else "0.8", "current_regime": "TRENDING_UP",
           "executing_strategy_id": "momentum", "total_uncertainty": "0.1",
           "ood_detected": "false", "urgency": "normal", "max_slippage_bps": "10",
           "time_in_force": "GTC"}
    msg.update({k: str(v) for k, v in kw.items()})
    return msg


def write_market(r: redis.Redis, config: Layer3Config, now_ms: int, *,
                 age_ms: int = 0, whale: float = 0.2, funding: float = 0.0001,
                 symbols: Any = None) -> None:
    """Layer 1's prices hash and one readings hash per symbol (stamped ``age_ms`` ago)."""
    cfg = config.streams
    syms = list(symbols or PRICES)
    r.hset(cfg.prices_key, mapping={s: str(PRICES[s]) for s in syms})
    for s in syms:
        r.hset(cfg.cascade_key.format(symbol=s), mapping={
            "funding_rate": str(funding), "oi_change_pct": "0.0", "volume_ratio": "1.0",
            "onchain_whale_pressure": str(whale), "exchange_netflow_zscore": "0.1",
            "timestamp": str(now_ms - age_ms)})


def outputs(r: redis.Redis, config: Layer3Config) -> list[dict[str, Any]]:
    """The output stream's entries, their JSON ``data`` parsed (with the entry id)."""
    out = []
    for entry_id, fields in r.xrange(config.streams.output_stream):
        data = json.loads(fields[b"data"])
        assert int(fields[b"decision_id"]) == data["decision_id"]
        assert int(fields[b"schema_version"]) == data["schema_version"]
        out.append({**data, "_id": entry_id.decode()})
    return out


def published_ids(r: redis.Redis, config: Layer3Config) -> set[str]:
    """Every input id some output entry answers."""
    return {i for o in outputs(r, config) for i in o["source_ids"]}


def dead_letters(r: redis.Redis, config: Layer3Config) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in f.items()}
            for _, f in r.xrange(config.streams.dead_letter_stream)]


def pending(r: redis.Redis, config: Layer3Config) -> int:
    info = r.xpending(config.streams.input_stream, config.streams.consumer_group)
    return int(info["pending"])


class Harness:
    """One in-process loop: service (SQLite file, manual clock, own registry) + Redis."""

    def __init__(self, config: Layer3Config, clock: ManualClock | None = None,
                 consumer: str = "loop-1") -> None:
        self.config = config
        self.clock = clock or ManualClock()
        self.consumer = consumer
        self.registry = CollectorRegistry()
        self.store = Store(config.persistence.url)
        self.svc: SizingService = build_service(config, registry=self.registry,
                                                store=self.store, clock=self.clock)
        self.redis = open_redis(config)
        self.loop = LiveLoop(self.svc, self.redis, clock=self.clock, consumer_name=consumer)

    @property
    def now_ms(self) -> int:
        return self.clock.time_ns() // 1_000_000

    async def __aenter__(self) -> Harness:
        await self.svc.start()
        await self.loop.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.svc.stop()
        await self.redis.aclose()
        self.store.close()

    async def drain(self, max_ticks: int = 50) -> int:
        """Tick until a tick finds nothing (bounded); returns the messages handled."""
        total = 0
        for _ in range(max_ticks):
            n = await self.loop.tick()
            if n == 0:
                return total
            total += n
        raise AssertionError(f"still busy after {max_ticks} ticks")
