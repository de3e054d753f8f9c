"""Faults with real processes: Redis restarted mid-run, the loop SIGKILLed mid-tick, and two
loop processes on one portfolio (one owner; takeover after a silent TTL or a pause; the
paused owner fenced out). Every wait is bounded polling; nothing sleeps to let time pass."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from prometheus_client import CollectorRegistry

from himari_l3 import ManualClock
from himari_l3.config.schema import Layer3Config, parse_config
from himari_l3.persistence import Store
from himari_l3.persistence.lease import Lease
from himari_l3.streams.run import run_live
from redis_support import wait_for
from stream_support import dead_letters, l2, outputs, pending, stream_settings, write_market

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SYMS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


def journaled_sources(config: Layer3Config) -> dict[str, int]:
    """{input id: decision seq} from the journal's decisions (a duplicate fails)."""
    store = Store(config.persistence.url)
    try:
        seen: dict[str, int] = {}
        for d in store.decisions():
            for i in (d["request"].get("source") or {}).get("ids", []):
                assert i not in seen, f"{i} applied twice: {seen[i]} and {d['seq']}"
                seen[i] = int(d["seq"])
        return seen
    finally:
        store.close()


def published(r: redis.Redis, config: Layer3Config) -> dict[str, int]:
    """{input id: decision id} from the output stream; a re-published decision must be
    the same entry (same decision id for the same ids)."""
    out: dict[str, int] = {}
    for o in outputs(r, config):
        for i in o["source_ids"]:
            assert out.setdefault(i, o["decision_id"]) == o["decision_id"], i
    return out


# ------------------------------------------------------------------ Redis restarted
async def test_redis_restarted_mid_run_loses_nothing(tmp_path: Path, own_redis: Any) -> None:
    """Redis goes down (clean shutdown, append-only file) and comes back: the loop retries,
    then decides every message exactly once."""
    data = stream_settings(tmp_path, own_redis.url, tick_ms=5)
    cfg = parse_config(Layer3Config, data)
    r = redis.Redis.from_url(own_redis.url)
    clock = ManualClock()
    now_ms = clock.time_ns() // 1_000_000
    write_market(r, cfg, now_ms)
    registry = CollectorRegistry()
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_live(cfg, stop, clock=clock, registry=registry,
                                        on_ready=lambda _: ready.set()))
    await asyncio.wait_for(ready.wait(), 30)

    async def until(cond: Any, what: str) -> None:
        for _ in range(3000):  # bounded: 3000 x 10 ms
            if cond():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"timed out waiting for {what}")

    ids = [r.xadd(cfg.streams.input_stream, l2(now_ms, SYMS[i % 3])).decode()
           for i in range(30)]
    await until(lambda: set(ids) <= set(published(r, cfg)), "the first 30 decided")
    own_redis.stop()

    def errors() -> float:
        return sum(s.value for f in registry.collect() for s in f.samples
                   if s.name == "himari_l3_stream_redis_errors_total")
    await until(lambda: errors() > 0, "the loop to see Redis down")
    own_redis.start()
    r = redis.Redis.from_url(own_redis.url)
    ids += [r.xadd(cfg.streams.input_stream, l2(now_ms, SYMS[i % 3])).decode()
            for i in range(30)]
    await until(lambda: set(ids) <= set(published(r, cfg)), "all 60 decided")
    stop.set()
    await asyncio.wait_for(task, 30)
    assert set(journaled_sources(cfg)) == set(ids)
    assert dead_letters(r, cfg) == [] and pending(r, cfg) == 0


# ------------------------------------------------------------------ processes
def write_config(tmp_path: Path, redis_url: str, **streams: Any) -> tuple[Path, Layer3Config]:
    data = stream_settings(tmp_path, redis_url, **streams)
    data["metrics"] = {"enabled": False}
    data["streams"].pop("consumer_name")  # hostname-pid: one per process
    path = tmp_path / "layer3.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, parse_config(Layer3Config, data)


def start_loop(cfg_path: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "himari_l3", "run", "--config",
                             str(cfg_path)], stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, env=env, cwd=cfg_path.parent)


def owner(config: Layer3Config) -> str:
    lease = Lease(config.persistence.url, config.streams.portfolio, "probe", 1.0)
    try:
        view = lease.observe()
        return "" if view is None else view.owner
    finally:
        lease.close()


class Feeder(threading.Thread):
    """XADDs ``n`` messages at about ``rate`` per second (bounded), recording their ids."""

    def __init__(self, url: str, config: Layer3Config, n: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.r = redis.Redis.from_url(url)
        self.config, self.n, self.rate = config, n, rate
        self.ids: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        import time

        t0 = time.monotonic()
        for i in range(self.n):
            now_ms = time.time_ns() // 1_000_000
            self.ids.append(self.r.xadd(self.config.streams.input_stream,
                                        l2(now_ms, SYMS[i % 3])).decode())
            delay = t0 + (i + 1) / self.rate - time.monotonic()
            if delay > 0:
                self.done.wait(delay)  # pacing the feed, not waiting for the system
        self.done.set()


def refresh_market(r: redis.Redis, config: Layer3Config) -> None:
    import time

    write_market(r, config, time.time_ns() // 1_000_000)


def test_sigkill_mid_tick_resumes_with_nothing_lost_or_applied_twice(
        tmp_path: Path, redis_url: str) -> None:
    """kill -9 while messages are flowing (ticks of 50 ms: the kill lands mid-tick), then a
    restart: every message decided exactly once, its decision published, nothing pending;
    SIGTERM then stops the loop gracefully."""
    cfg_path, cfg = write_config(tmp_path, redis_url, tick_ms=50, lease_ttl_ms=800,
                                 claim_idle_ms=500)
    r = redis.Redis.from_url(redis_url)
    refresh_market(r, cfg)
    log = tmp_path / "loop.log"
    proc = start_loop(cfg_path, log)
    feeder = Feeder(redis_url, cfg, 300, 150.0)
    try:
        wait_for(lambda: owner(cfg), 30, "the loop to own the portfolio")
        feeder.start()
        wait_for(lambda: len(outputs(r, cfg)) >= 5, 30, "a few decisions")
        # Kill while a tick holds messages read and not yet acknowledged.
        wait_for(lambda: pending(r, cfg) > 0, 30, "a tick in progress")
        proc.kill()  # SIGKILL
        proc.wait(10)
        proc = start_loop(cfg_path, log)
        feeder.join(30)
        refresh_market(r, cfg)
        wait_for(lambda: set(feeder.ids) <= set(published(r, cfg)), 60,
                 "every message decided after the restart")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    journal = journaled_sources(cfg)
    assert set(journal) == set(feeder.ids)
    assert published(r, cfg) == journal  # same decision for each id, live or re-published
    assert dead_letters(r, cfg) == [] and pending(r, cfg) == 0
    assert owner(cfg) == ""  # released at the graceful stop


def test_two_loops_one_owner_takeover_and_the_paused_owner_fenced_out(
        tmp_path: Path, redis_url: str) -> None:
    """Two loop processes, one portfolio: the second waits as a standby. The owner is
    paused (SIGSTOP) longer than the lease: the standby takes over and decides everything;
    the old owner, resumed, finds its lease lost and exits 3 without committing anything.
    A graceful stop of the new owner releases the lease."""
    cfg_path, cfg = write_config(tmp_path, redis_url, tick_ms=5, lease_ttl_ms=800,
                                 claim_idle_ms=300)
    r = redis.Redis.from_url(redis_url)
    refresh_market(r, cfg)
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    a = start_loop(cfg_path, log_a)
    b: subprocess.Popen[bytes] | None = None
    try:
        first = wait_for(lambda: owner(cfg), 30, "A to own the portfolio")
        b = start_loop(cfg_path, log_b)
        ids = [r.xadd(cfg.streams.input_stream, l2(_now_ms(), SYMS[i % 3])).decode()
               for i in range(20)]
        wait_for(lambda: set(ids) <= set(published(r, cfg)), 30, "A to decide 20")
        consumers = {c["name"].decode() for c in r.xinfo_consumers(
            cfg.streams.input_stream, cfg.streams.consumer_group)}
        assert consumers == {first}  # the standby never read the stream
        a.send_signal(signal.SIGSTOP)  # a pause longer than the lease
        refresh_market(r, cfg)
        ids += [r.xadd(cfg.streams.input_stream, l2(_now_ms(), SYMS[i % 3])).decode()
                for i in range(20)]
        second = wait_for(lambda: (o := owner(cfg)) and o != first and o, 30,
                          "B to take over")
        wait_for(lambda: set(ids) <= set(published(r, cfg)), 60, "B to decide the rest")
        a.send_signal(signal.SIGCONT)
        assert a.wait(30) == 3, log_a.read_text()[-3000:]
        assert "lost" in log_a.read_text()
        assert owner(cfg) == second
        b.send_signal(signal.SIGTERM)
        assert b.wait(30) == 0, log_b.read_text()[-3000:]
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
    assert set(journaled_sources(cfg)) == set(ids)
    assert published(r, cfg) == journaled_sources(cfg)
    assert owner(cfg) == ""


def _now_ms() -> int:
    import time

    return time.time_ns() // 1_000_000


async def test_loop_started_while_redis_is_down_waits_for_it(tmp_path: Path,
                                                            own_redis: Any) -> None:
    """Redis unreachable at start-up: the loop retries instead of dying, then decides."""
    cfg = parse_config(Layer3Config, stream_settings(tmp_path, own_redis.url))
    own_redis.stop()
    clock = ManualClock()
    registry = CollectorRegistry()
    stop = asyncio.Event()
    task = asyncio.create_task(run_live(cfg, stop, clock=clock, registry=registry))

    async def until(cond: Any, what: str) -> None:
        for _ in range(3000):  # bounded: 3000 x 10 ms
            if cond():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"timed out waiting for {what}")

    await until(lambda: any(s.value > 0 for f in registry.collect() for s in f.samples
                            if s.name == "himari_l3_stream_redis_errors_total"),
                "a failed read")
    assert not task.done()
    own_redis.start()
    r = redis.Redis.from_url(own_redis.url)
    now_ms = clock.time_ns() // 1_000_000
    write_market(r, cfg, now_ms)
    i = r.xadd(cfg.streams.input_stream, l2(now_ms)).decode()
    await until(lambda: i in published(r, cfg), "the message decided")
    stop.set()
    await asyncio.wait_for(task, 30)
