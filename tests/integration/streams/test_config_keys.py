"""No inert ``streams`` key: changing each key alone changes what the loop observably does
(against a real redis-server). The parser-only keys are exercised the same way through the
loop, so the table covers every leaf of ``streams``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry

from himari_l3 import ManualClock
from himari_l3.config.loader import leaf_paths
from himari_l3.config.schema import Layer3Config, parse_config
from himari_l3.persistence.lease import Lease
from himari_l3.streams.run import run_live
from redis_support import free_port
from stream_support import Harness, dead_letters, l2, outputs, stream_settings, write_market

pytestmark = pytest.mark.integration

Scenario = Callable[[Layer3Config, redis.Redis], Awaitable[Any]]


async def _decide(cfg: Layer3Config, r: redis.Redis, *messages: dict[str, str],
                  market: bool = True, stream: str | None = None, age_ms: int = 0) -> Any:
    """Run the loop over ``messages``; what came out: outputs, dead letters, and what each
    decision journaled (Layer 1 notes, strategies, readings)."""
    h = Harness(cfg)
    async with h:
        if market:
            write_market(r, cfg, h.now_ms, age_ms=age_ms)
        for m in messages:
            r.xadd(stream or cfg.streams.input_stream, m)
        await h.drain()
        outs = outputs(r, cfg)
        rows = [h.store.decision(o["decision_id"]) for o in outs]
        journaled = [(row["trace"].get("inputs"), [x["strategy_id"] for x in row["request"][
            "signals"]], row["request"]["cascade"]) for row in rows if row is not None]
        return ([(o["allocations"], o["venue_symbols"], o["portfolio"], o["source_ids"] != [])
                 for o in outs], [d["reason"] for d in dead_letters(r, cfg)], journaled)


def _now() -> int:
    return ManualClock().time_ns() // 1_000_000


def decide(*kw: dict[str, Any], market: bool = True, age_ms: int = 0) -> Scenario:
    async def run(cfg: Layer3Config, r: redis.Redis) -> Any:
        return await _decide(cfg, r, *[l2(_now(), **k) for k in kw], market=market,
                             age_ms=age_ms)
    return run


def into(stream: str) -> Scenario:
    async def run(cfg: Layer3Config, r: redis.Redis) -> Any:
        return await _decide(cfg, r, l2(_now()), stream=stream)
    return run


async def names(cfg: Layer3Config, r: redis.Redis) -> Any:
    """Where things went: output/dead-letter stream lengths, groups, consumers."""
    await _decide(cfg, r, l2(_now()), l2(_now(), confidence="nan"))
    s = cfg.streams
    groups = [g["name"].decode() for g in r.xinfo_groups(s.input_stream)]
    consumers = [c["name"].decode() for c in r.xinfo_consumers(s.input_stream,
                                                               s.consumer_group)]
    return r.xlen(s.output_stream), r.xlen(s.dead_letter_stream), groups, consumers


async def announced(cfg: Layer3Config, r: redis.Redis) -> Any:
    sub = r.pubsub()
    sub.subscribe("announce-probe")
    sub.get_message(timeout=1.0)
    await _decide(cfg, r, l2(_now()))
    msg = sub.get_message(timeout=0.5)
    sub.close()
    return msg is not None


async def trimmed(cfg: Layer3Config, r: redis.Redis) -> Any:
    """Stream lengths after 600 outputs and 600 dead letters (MAXLEN ~)."""
    h = Harness(cfg)
    async with h:
        for i in range(600):
            await h.loop.publisher.publish({"decision_id": i, "schema_version": 1}, [])
        from himari_l3.streams.consumer import DeadLetter
        from himari_l3.streams.wire import MessageRejected, RejectCode
        await h.loop.consumer.dead_letter([DeadLetter(f"0-{i + 1}", None, MessageRejected(
            RejectCode.MALFORMED, "x", i, "y")) for i in range(600)], 0)
    return r.xlen(cfg.streams.output_stream), r.xlen(cfg.streams.dead_letter_stream)


async def connects(cfg: Layer3Config, r: redis.Redis) -> Any:
    h = Harness(cfg)
    try:
        async with h:
            return True
    except redis.RedisError:
        return False


async def claims(cfg: Layer3Config, r: redis.Redis) -> Any:
    s, g = cfg.streams.input_stream, cfg.streams.consumer_group
    r.xgroup_create(s, g, id="0", mkstream=True)
    i = r.xadd(s, l2(_now()))
    r.xreadgroup(g, "dead-consumer", {s: ">"})
    r.xclaim(s, g, "dead-consumer", 0, [i], idle=3_600_000)
    return await _decide(cfg, r)


async def block_of_second_read(cfg: Layer3Config, r: redis.Redis) -> Any:
    """The tick's window: how long its second read may wait (ms)."""
    h = Harness(cfg)
    async with h:
        r.xadd(cfg.streams.input_stream, l2(_now()))
        seen: list[int | None] = []
        real = h.loop.consumer.read

        async def spy(count: int, block_ms: int | None) -> Any:
            seen.append(block_ms)
            return await real(count, block_ms) if len(seen) == 1 else []
        h.loop.consumer.read = spy  # type: ignore[method-assign]
        h.loop._recover = False
        h.loop._next_claim = float("inf")
        await h.loop._collect(cfg.streams.tick_ms, 10)
        return (seen[1] or 0) > 1000 if len(seen) > 1 else None


async def lease_wait(cfg: Layer3Config, r: redis.Redis) -> Any:
    """Another owner went silent: does this process take over after 1 s of its clock?"""
    clock = ManualClock()
    other = Lease(cfg.persistence.url, cfg.streams.portfolio, "other", 3600.0, clock)
    assert other.try_acquire()
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_live(cfg, stop, clock=clock, registry=CollectorRegistry(),
                                        on_ready=lambda _: ready.set()))
    took = False
    for _ in range(30):  # bounded: 30 polls, the standby's clock 0.2 s further each time
        clock.advance(0.2)
        try:
            await asyncio.wait_for(ready.wait(), 0.1)
            took = True
            break
        except TimeoutError:
            continue
    stop.set()
    await asyncio.wait_for(task, 30)
    other.close()
    return took


async def lease_row(cfg: Layer3Config, r: redis.Redis) -> Any:
    await _decide(cfg, r, l2(_now()))
    lease = Lease(cfg.persistence.url, cfg.streams.portfolio, "probe", 1.0)
    view = lease.observe()
    lease.close()
    return view is not None


FIXED_PRICES, FIXED_CASCADE = "cfgkeys:prices", "cfgkeys:cascade:{symbol}"


async def market_at_fixed_keys(cfg: Layer3Config, r: redis.Redis) -> Any:
    """Layer 1 writes under fixed names; the config under test reads its own."""
    fixed = cfg.model_copy(update={"streams": cfg.streams.model_copy(update={
        "prices_key": FIXED_PRICES, "cascade_key": FIXED_CASCADE})})
    write_market(r, fixed, _now())
    return await _decide(cfg, r, l2(_now()), market=False)


BAD_URL = f"redis://127.0.0.1:{free_port()}/0"
TABLE: dict[str, tuple[Any, Scenario]] = {
    "streams.redis_url": (BAD_URL, connects),
    "streams.input_stream": ("probe-in", into("probe-in")),
    "streams.output_stream": ("probe-out", names),
    "streams.output_channel": ("announce-probe", announced),
    "streams.output_maxlen": (100, trimmed),
    "streams.consumer_group": ("probe-group", names),
    "streams.consumer_name": ("probe-consumer", names),
    "streams.dead_letter_stream": ("probe-dead", names),
    "streams.dead_letter_maxlen": (100, trimmed),
    "streams.prices_key": ("probe:prices", market_at_fixed_keys),
    "streams.cascade_key": ("probe:{symbol}", market_at_fixed_keys),
    "streams.tick_ms": (5_000, block_of_second_read),
    "streams.tick_max_messages": (1, decide({}, {"symbol": "ETHUSDT"})),
    "streams.symbol_map": ({"BTCUSDT": "XBT-USD"}, decide({})),
    "streams.default_strategy_id": ("probe", decide({"executing_strategy_id": "null"})),
    "streams.default_symbol": ("BTC-USD", decide({"symbol": "null"})),
    "streams.max_signal_age_ms": (1, decide({"timestamp": _now() - 100})),
    "streams.hold_above_uncertainty": (0.05, decide({})),
    "streams.l1_max_age_ms": (1, decide({}, age_ms=1_000)),
    "streams.l1_missing_policy": ("neutral", decide({}, market=False)),
    "streams.netflow_compression": ("tanh", decide({})),
    "streams.netflow_scale": (10.0, decide({})),
    "streams.claim_idle_ms": (86_400_000, claims),
    "streams.portfolio": ("probe-portfolio", decide({})),
    "streams.lease_ttl_ms": (600_000, lease_wait),
}


def test_table_covers_every_streams_leaf() -> None:
    """Every leaf of ``streams`` has a scenario; none is extra."""
    leaves = {k for k in leaf_paths(Layer3Config().model_dump()) if k.startswith("streams.")}
    assert set(TABLE) == leaves


@pytest.mark.parametrize("key", sorted(TABLE))
async def test_changing_the_key_changes_what_the_loop_does(key: str, tmp_path: Path,
                                                           redis_url: str) -> None:
    """The same scenario under the default and the changed key gives different results."""
    new, scenario = TABLE[key]
    r = redis.Redis.from_url(redis_url)
    base = stream_settings(tmp_path / "base", redis_url, symbol_map={})
    changed = stream_settings(tmp_path / "new", redis_url, symbol_map={})
    if key in ("streams.prices_key", "streams.cascade_key"):
        for side in (base, changed):  # where `market_at_fixed_keys` writes
            side["streams"].update(prices_key=FIXED_PRICES, cascade_key=FIXED_CASCADE)
    changed["streams"][key.split(".", 1)[1]] = new
    a = await scenario(parse_config(Layer3Config, base), r)
    b = await scenario(parse_config(Layer3Config, changed), r)
    assert a != b, (a, b)
