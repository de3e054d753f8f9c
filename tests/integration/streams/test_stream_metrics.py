"""Every stream-loop metric family is written by the real loop (``run_live`` against a real
redis-server and SQLite): processed, duplicate, dead-lettered and claimed messages, a stale
Layer 1 reading, a Redis outage, the lease acquired and released."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest

from himari_l3 import Layer3Metrics, ManualClock
from himari_l3.config.schema import Layer3Config, parse_config
from himari_l3.streams.run import run_live
from stream_support import l2, published_ids, stream_settings, write_market

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FAMILIES = ("himari_l3_stream_", "himari_l3_layer1_", "himari_l3_lease_")


async def test_every_stream_family_is_written(tmp_path: Path, own_redis: Any) -> None:
    """After one scenario through the live loop, no stream/lease family is unwritten."""
    cfg = parse_config(Layer3Config, stream_settings(tmp_path, own_redis.url,
                                                     l1_max_age_ms=1_000,
                                                     lease_ttl_ms=600_000))
    s, g = cfg.streams.input_stream, cfg.streams.consumer_group
    r = redis.Redis.from_url(own_redis.url)
    clock = ManualClock()
    now = clock.time_ns() // 1_000_000
    write_market(r, cfg, now, symbols=["BTCUSDT", "ETHUSDT"])
    write_market(r, cfg, now, age_ms=5_000, symbols=["SOLUSDT"])  # stale
    r.xgroup_create(s, g, id="0", mkstream=True)
    claimed = r.xadd(s, l2(now, "ETHUSDT")).decode()
    r.xreadgroup(g, "dead-consumer", {s: ">"})
    r.xclaim(s, g, "dead-consumer", 0, [claimed], idle=3_600_000)
    registry = CollectorRegistry()
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_live(cfg, stop, clock=clock, registry=registry,
                                        on_ready=lambda _: ready.set()))
    await asyncio.wait_for(ready.wait(), 30)

    async def until(cond: Any) -> None:
        for _ in range(3000):
            if cond():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("timed out:\n" + generate_latest(registry).decode()[-3000:])

    ids = [r.xadd(s, l2(now, sym)).decode() for sym in ("BTCUSDT", "SOLUSDT")]
    r.xadd(s, l2(now, confidence="2"))  # poison
    await until(lambda: {*ids, claimed} <= published_ids(r, cfg))
    own_redis.stop()
    await until(lambda: "stream_redis_errors_total{" in generate_latest(registry).decode())
    own_redis.start()
    r = redis.Redis.from_url(own_redis.url)
    # A redelivery: a decided id put back into the pending list.
    r.xclaim(s, g, "dead-consumer", 0, [ids[0]], idle=3_600_000, force=True)
    clock.advance(31.0)  # the next claim of idle entries is due (claim_idle_ms / 2)
    await until(lambda: 'result="duplicate"' in generate_latest(registry).decode())
    stop.set()
    await asyncio.wait_for(task, 30)
    text = generate_latest(registry).decode()
    families = sorted(f.name for f in Layer3Metrics(CollectorRegistry()).registry.collect()
                      if f.name.startswith(FAMILIES))
    assert len(families) == 12
    missing = [f for f in families if not _written(text, f)]
    assert missing == []


def _written(text: str, family: str) -> bool:
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(family):
            continue
        name = line.split("{")[0].split(" ")[0]
        value = float(line.rsplit(" ", 1)[1])
        if name.endswith(("_total", "_count")) and value > 0:
            return True
        if not name.endswith(("_total", "_count", "_sum", "_bucket", "_created")):
            return True  # a gauge that was set
    return False
