"""The live loop against a real redis-server and a real SQLite journal (in process, manual
clock): Layer 2 in, one allocation per tick, the output entry out; poison messages, duplicate
delivery, a restart from the store, stale Layer 1 data and a dead consumer's entries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from himari_l3 import ManualClock
from himari_l3.persistence import Store
from stream_support import (
    Harness,
    dead_letters,
    l2,
    outputs,
    pending,
    stream_config,
    write_market,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    """A synchronous client for the test's own reads and writes."""
    return redis.Redis.from_url(redis_url)


async def test_messages_in_one_decision_out(tmp_path: Path, redis_url: str,
                                            r: redis.Redis) -> None:
    """Both Layer 2 forms in one tick: one decision, journaled with its input ids, published
    with every field Layer 4 needs, announced on the channel, and the inputs acknowledged."""
    cfg = stream_config(tmp_path, redis_url, tick_ms=200)
    h = Harness(cfg)
    async with h:
        write_market(r, cfg, h.now_ms)
        sub = r.pubsub()
        sub.subscribe(cfg.streams.output_channel)
        sub.get_message(timeout=1.0)  # the subscribe confirmation
        ids = [r.xadd(cfg.streams.input_stream, l2(h.now_ms)).decode(),
               r.xadd(cfg.streams.input_stream, {"data": json.dumps(
                   {"action": "SELL", "confidence": 0.7, "implicit_tier": 2,
                    "regime": "bear", "timestamp": h.now_ms, "strategy_id": "meanrev",
                    "symbol": "ETHUSDT"})}).decode()]
        assert await h.drain() == 2
        [out] = outputs(r, cfg)
        assert out["schema_version"] == 1 and out["source_ids"] == ids
        assert out["source_stream"] == cfg.streams.input_stream
        assert set(out["allocations"]) == {"BTC-USD", "ETH-USD"}
        assert out["allocations"]["BTC-USD"] > 0 > out["allocations"]["ETH-USD"]
        assert out["venue_symbols"] == {"BTC-USD": "BTCUSDT", "ETH-USD": "ETHUSDT"}
        assert out["execution_hints"]["BTC-USD"]["time_in_force"] == "GTC"
        assert "intents" in out and "trading_state" in out
        assert out["portfolio"] == "default"
        note = sub.get_message(timeout=2.0)
        assert note is not None and json.loads(note["data"])["decision_id"] == (
            out["decision_id"])
        assert pending(r, cfg) == 0
        assert h.store.stream_input_seqs(cfg.streams.input_stream, ids) == {
            i: out["decision_id"] for i in ids}
        row = h.store.decision(out["decision_id"])
        assert row is not None and row["request"]["source"]["ids"] == ids


async def test_poison_message_is_dead_lettered_and_never_blocks(tmp_path: Path,
                                                                redis_url: str,
                                                                r: redis.Redis) -> None:
    """Malformed messages go to the dead-letter stream with their reason (and are
    acknowledged); the valid ones around them are decided; nothing stays pending."""
    cfg = stream_config(tmp_path, redis_url, tick_ms=100)
    h = Harness(cfg)
    async with h:
        write_market(r, cfg, h.now_ms)
        s = cfg.streams.input_stream
        good1 = r.xadd(s, l2(h.now_ms)).decode()
        bad = [r.xadd(s, l2(h.now_ms, confidence="nan")).decode(),
               r.xadd(s, l2(h.now_ms, current_regime="MOON")).decode(),
               r.xadd(s, {"data": "{not json"}).decode(),
               r.xadd(s, l2(h.now_ms, symbol="DOGEUSDT")).decode(),
               r.xadd(s, l2(h.now_ms - 3_600_000)).decode()]
        good2 = r.xadd(s, l2(h.now_ms, symbol="SOLUSDT")).decode()
        await h.drain()
        dead = {d["source_id"]: d for d in dead_letters(r, cfg)}
        assert set(dead) == set(bad)
        assert [dead[i]["reason"] for i in bad] == [
            "malformed", "unknown_regime", "malformed", "unknown_symbol", "stale"]
        assert dead[bad[0]]["field"] == "confidence" and "nan" in dead[bad[0]]["detail"]
        assert json.loads(dead[bad[1]]["message"])["current_regime"] == "MOON"
        decided = [i for o in outputs(r, cfg) for i in o["source_ids"]]
        assert sorted(decided) == sorted([good1, good2])
        assert pending(r, cfg) == 0


async def test_redelivery_after_a_crash_between_commit_and_ack_changes_nothing(
        tmp_path: Path, redis_url: str, r: redis.Redis) -> None:
    """The decision is committed, then the publish fails (as a crash would leave it): the
    messages stay pending; a restarted loop finds them journaled, re-publishes the same
    decision and acknowledges them. Learned state and the journal do not move."""
    cfg = stream_config(tmp_path, redis_url)
    clock = ManualClock()
    h = Harness(cfg, clock)
    async with h:
        write_market(r, cfg, h.now_ms)
        ids = [r.xadd(cfg.streams.input_stream, l2(h.now_ms, symbol=s)).decode()
               for s in ("BTCUSDT", "ETHUSDT")]

        async def crash(*_: object) -> str:
            raise redis.exceptions.ConnectionError("the process died here")
        h.loop.publisher.publish = crash  # type: ignore[method-assign]
        with pytest.raises(redis.exceptions.ConnectionError):
            await h.loop.tick()
        assert pending(r, cfg) == 2 and outputs(r, cfg) == []
        digest, seq = h.svc.digest(), h.svc.seq
    # A new process: service restored from the store, a new loop on the same group.
    h2 = Harness(cfg, clock)
    async with h2:
        assert h2.svc.digest() == digest
        await h2.drain()
        [out] = outputs(r, cfg)
        assert out["source_ids"] == ids and out["decision_id"] == seq
        assert h2.svc.seq == seq  # nothing new journaled
        assert h2.svc.digest() == digest
        assert pending(r, cfg) == 0
        assert len([d for d in h2.store.decisions() if d["kind"] == "allocate"]) == 1
        duplicates = [smp.value for f in h2.registry.collect() for smp in f.samples
                      if smp.name == "himari_l3_stream_messages_total"
                      and smp.labels.get("result") == "duplicate"]
        assert duplicates == [2.0]


async def test_duplicate_delivery_is_idempotent(tmp_path: Path, redis_url: str,
                                                r: redis.Redis) -> None:
    """The same entries delivered again (claimed back into the pending list after their
    decision) are answered from the journal: one decision, output re-published."""
    cfg = stream_config(tmp_path, redis_url)
    h = Harness(cfg)
    async with h:
        write_market(r, cfg, h.now_ms)
        ids = [r.xadd(cfg.streams.input_stream, l2(h.now_ms)).decode()]
        await h.drain()
        digest = h.svc.digest()
        decisions = len(h.store.decisions())
        # Redis delivers them again (as after an operator's XCLAIM or a lost XACK).
        r.xadd(cfg.streams.input_stream, l2(h.now_ms, symbol="ETHUSDT"))
        entries = [(ids[0], {b"symbol": b"ignored"})]
        await h.loop.handle(entries)
        outs = outputs(r, cfg)
        assert [o["decision_id"] for o in outs].count(outs[0]["decision_id"]) == 2
        assert h.svc.digest() == digest and len(h.store.decisions()) == decisions
        await h.drain()
        assert len(h.store.decisions()) == decisions + 1


async def test_idempotency_survives_a_restart_from_the_store(tmp_path: Path, redis_url: str,
                                                             r: redis.Redis) -> None:
    """After a restart (snapshot + replay), the processed ids are still known."""
    cfg = stream_config(tmp_path, redis_url)
    clock = ManualClock()
    h = Harness(cfg, clock)
    async with h:
        write_market(r, cfg, h.now_ms)
        ids = [r.xadd(cfg.streams.input_stream, l2(h.now_ms)).decode() for _ in range(3)]
        await h.drain()
    store = Store(cfg.persistence.url)
    assert set(store.stream_input_seqs(cfg.streams.input_stream, ids)) == set(ids)
    store.close()
    h2 = Harness(cfg, clock)
    async with h2:
        before = h2.svc.digest()
        await h2.loop.handle([(i, None) for i in ids])
        assert h2.svc.digest() == before


@pytest.mark.parametrize("policy, traded", [("stressed", False), ("neutral", True)])
async def test_stale_layer1_reading_follows_the_policy_and_is_traced(
        tmp_path: Path, redis_url: str, r: redis.Redis, policy: str, traded: bool) -> None:
    """A reading older than l1_max_age_ms counts as missing: the policy's readings are used
    and the decision's trace says which symbol, why, and how old."""
    cfg = stream_config(tmp_path, redis_url, l1_max_age_ms=5_000,
                        l1_missing_policy=policy)
    h = Harness(cfg)
    async with h:
        write_market(r, cfg, h.now_ms, age_ms=7_000)
        r.xadd(cfg.streams.input_stream, l2(h.now_ms))
        await h.drain()
        [out] = outputs(r, cfg)
        assert (out["allocations"].get("BTC-USD", 0.0) > 0) is traded
        row = h.store.decision(out["decision_id"])
        assert row is not None
        note = row["trace"]["inputs"]["BTC-USD"]
        assert note["code"] == "LAYER1_STALE" and note["policy"] == policy
        assert note["age_ms"] == 7_000
        assert row["request"]["inputs"]["BTC-USD"]["code"] == "LAYER1_STALE"


async def test_layer1_whale_pressure_is_risk_only_against_the_trade(
        tmp_path: Path, redis_url: str, r: redis.Redis) -> None:
    """Whales selling (-1) cut the long and spare the short; whales buying (+1) the
    reverse. Fresh readings: nothing substituted in the trace."""
    sizes = {}
    for whale in (-1.0, 1.0):
        cfg = stream_config(tmp_path / str(whale), redis_url)
        h = Harness(cfg)
        async with h:
            # Funding at its threshold: whale pressure against the trade tips the score
            # past 0.4 (REDUCE_50%); in its favour the score stays below.
            write_market(r, cfg, h.now_ms, whale=whale, funding=0.001)
            r.xadd(cfg.streams.input_stream, l2(h.now_ms, symbol="BTCUSDT", direction=1))
            r.xadd(cfg.streams.input_stream, l2(h.now_ms, symbol="ETHUSDT", direction=2))
            await h.drain()
            [out] = outputs(r, cfg)
            row = h.store.decision(out["decision_id"])
            assert row is not None and "inputs" not in row["trace"]
            sizes[whale] = out["allocations"]
    assert sizes[-1.0]["BTC-USD"] < sizes[1.0]["BTC-USD"]
    assert abs(sizes[1.0]["ETH-USD"]) < abs(sizes[-1.0]["ETH-USD"])


async def test_dead_consumers_pending_entries_are_claimed(tmp_path: Path, redis_url: str,
                                                          r: redis.Redis) -> None:
    """Entries a dead consumer read and never acknowledged are claimed (XAUTOCLAIM) once
    idle past claim_idle_ms, decided once, and acknowledged."""
    cfg = stream_config(tmp_path, redis_url, claim_idle_ms=30_000)
    s, g = cfg.streams.input_stream, cfg.streams.consumer_group
    r.xgroup_create(s, g, id="0", mkstream=True)
    h = Harness(cfg)
    write_market(r, cfg, h.now_ms)
    ids = [r.xadd(s, l2(h.now_ms, symbol=sym)).decode() for sym in ("BTCUSDT", "SOLUSDT")]
    r.xreadgroup(g, "dead-consumer", {s: ">"}, count=10)  # read, then the consumer died
    # Their idle time as Redis reports it, set to an hour (instead of waiting for it).
    r.xclaim(s, g, "dead-consumer", 0, ids, idle=3_600_000)
    async with h:
        await h.drain()
        decided = [i for o in outputs(r, cfg) for i in o["source_ids"]]
        assert sorted(decided) == sorted(ids)
        assert pending(r, cfg) == 0
        claimed = [smp.value for f in h.registry.collect() for smp in f.samples
                   if smp.name == "himari_l3_stream_messages_total"
                   and smp.labels.get("result") == "claimed"]
        assert claimed == [2.0]
