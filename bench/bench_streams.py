"""The live loop end to end: ``XADD`` of a Layer 2 message → its decision on the output stream.

Starts a throwaway ``redis-server`` (127.0.0.1, free port, no persistence) and the loop as a
user runs it (``python -m himari_l3 run --config ...``: SQLite journal with the default
``synchronous=full`` in a temp dir, RL off, metrics off), writes Layer 1's prices and
readings for 20 symbols (refreshed every 2 s), then:

1. **latency** — an open-loop feeder appends Layer 2 messages at ``--rate`` (default 500/s)
   over the 20 symbols for ``--duration`` seconds (each carries its send time, a field the
   parser tolerates); a reader follows the output stream and takes, per input message, the
   time from its ``XADD`` to the first output entry answering it. p50/p90/p99/max, with
   ``streams.tick_ms`` = ``--tick-ms`` (default 1);
2. **sustained ingest** — a fresh loop (``tick_max_messages`` 1000, ``tick_ms`` 20) and
   ``--burst`` messages (default 50,000) appended as fast as a pipelined client can; rate =
   messages / (first ``XADD`` → every message answered). Then "none lost": every input id
   is answered by exactly one decision in the journal and on the output stream, nothing is
   pending or dead-lettered.

Bounded: every phase has a message cap and a deadline. Writes bench/results/streams.json.

    python bench/bench_streams.py [--rate 500] [--duration 20] [--burst 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from himari_l3.persistence import Store  # noqa: E402
from redis_support import RedisServer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "streams.json"
SYMBOLS = [f"S{i:02d}USDT" for i in range(20)]
SYNC = ["full"]  # persistence.sqlite_synchronous of the loops started (--sqlite-synchronous)


def message(i: int, now_ms: int) -> dict[str, str]:
    """A Layer 2 direction-form message for symbol i % 20, as XADD fields."""
    direction = 2 if i % 7 == 0 else 1
    return {"timestamp": str(now_ms), "symbol": SYMBOLS[i % 20], "direction": str(direction),
            "direction_label": "SHORT" if direction == 2 else "LONG",
            "confidence": f"{0.55 + 0.02 * (i % 20):.2f}", "current_regime": "RANGING",
            "executing_strategy_id": f"strat{i % 3}", "total_uncertainty": "0.2",
            "ood_detected": "false", "time_in_force": "GTC",
            "bench_sent_ns": str(time.time_ns())}


def write_layer1(r: redis.Redis, cfg: dict[str, Any]) -> None:
    now_ms = time.time_ns() // 1_000_000
    r.hset(cfg["prices_key"], mapping={s: str(100.0 + i) for i, s in enumerate(SYMBOLS)})
    for s in SYMBOLS:
        r.hset(cfg["cascade_key"].format(symbol=s), mapping={
            "funding_rate": "0.0001", "oi_change_pct": "0.0", "volume_ratio": "1.1",
            "onchain_whale_pressure": "0.1", "exchange_netflow_zscore": "0.1",
            "timestamp": str(now_ms)})


class Layer1Writer(threading.Thread):
    def __init__(self, r: redis.Redis, cfg: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.r, self.cfg, self.stop = r, cfg, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(2.0):
            write_layer1(self.r, self.cfg)


def start_loop(workdir: Path, redis_url: str, tag: str, **streams: Any) -> tuple[
        subprocess.Popen[bytes], dict[str, Any], Path]:
    s = {"redis_url": redis_url, "input_stream": f"{tag}:in", "output_stream": f"{tag}:out",
         "output_channel": f"{tag}:ann", "dead_letter_stream": f"{tag}:dead",
         "consumer_group": tag, "prices_key": "l1:prices", "cascade_key": "l1:{symbol}",
         "consumer_name": "bench", **streams}
    db = workdir / f"{tag}.sqlite"
    cfg = {"persistence": {"url": f"sqlite:///{db}", "sqlite_synchronous": SYNC[0]},
           "metrics": {"enabled": False},
           "sizing": {"limits": {"allow_short": True}}, "streams": s}
    path = workdir / f"{tag}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    log = (workdir / f"{tag}.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "himari_l3", "run", "--config", str(path)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    r = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # ready once the group exists
        try:
            if any(g["name"].decode() == tag for g in r.xinfo_groups(s["input_stream"])):
                return proc, s, db
        except redis.ResponseError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"the loop did not start:\n{(workdir / f'{tag}.log').read_text()}")


def stop_loop(proc: subprocess.Popen[bytes]) -> int:
    proc.terminate()
    return proc.wait(60)


class OutputReader(threading.Thread):
    """Follows the output stream; {input id: first time (ns) an output answered it}."""

    def __init__(self, redis_url: str, stream: str) -> None:
        super().__init__(daemon=True)
        self.r = redis.Redis.from_url(redis_url)
        self.stream = stream
        self.answered: dict[str, int] = {}
        self.entries = 0
        self.stop = threading.Event()

    def run(self) -> None:
        last = "0-0"
        while not self.stop.is_set():
            got = self.r.xread({self.stream: last}, count=1000, block=200)
            now = time.time_ns()
            for _, rows in got or []:
                for entry_id, fields in rows:
                    last = entry_id
                    self.entries += 1
                    for i in json.loads(fields[b"data"])["source_ids"]:
                        self.answered.setdefault(i, now)


def latency_phase(workdir: Path, url: str, rate: float, duration: float,
                  tick_ms: int) -> dict[str, Any]:
    proc, cfg, _ = start_loop(workdir, url, "lat", tick_ms=tick_ms)
    r = redis.Redis.from_url(url)
    reader = OutputReader(url, cfg["output_stream"])
    reader.start()
    sent: dict[str, int] = {}
    n = int(rate * duration)
    t0 = time.monotonic()
    for i in range(n):  # open loop: each message on its schedule
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        msg = message(i, time.time_ns() // 1_000_000)
        sent[r.xadd(cfg["input_stream"], msg).decode()] = int(msg["bench_sent_ns"])
    achieved = n / (time.monotonic() - t0)
    deadline = time.monotonic() + 30
    while len(reader.answered.keys() & sent.keys()) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    reader.stop.set()
    reader.join(5)
    stop_loop(proc)
    lat = sorted((reader.answered[i] - t) / 1e6 for i, t in sent.items()
                 if i in reader.answered)
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return {"messages": n, "answered": len(lat), "rate_achieved": round(achieved, 1),
            "tick_ms": tick_ms, "output_entries": reader.entries,
            "p50_ms": round(q[49], 3), "p90_ms": round(q[89], 3), "p99_ms": round(q[98], 3),
            "max_ms": round(lat[-1], 3), "mean_messages_per_decision":
                round(n / max(1, reader.entries), 2)}


def ingest_phase(workdir: Path, url: str, burst: int) -> dict[str, Any]:
    proc, cfg, db = start_loop(workdir, url, "ingest", tick_ms=20, tick_max_messages=1000)
    r = redis.Redis.from_url(url)
    reader = OutputReader(url, cfg["output_stream"])
    reader.start()
    ids: list[str] = []
    t0 = time.monotonic()
    pipe = r.pipeline(transaction=False)
    now_ms = time.time_ns() // 1_000_000
    for i in range(burst):
        pipe.xadd(cfg["input_stream"], message(i, now_ms))
        if (i + 1) % 1000 == 0:
            ids += [x.decode() for x in pipe.execute()]
    ids += [x.decode() for x in pipe.execute()]
    fed = time.monotonic() - t0
    deadline = time.monotonic() + 120
    while len(reader.answered) < burst and time.monotonic() < deadline:
        time.sleep(0.02)
    elapsed = time.monotonic() - t0
    reader.stop.set()
    reader.join(5)
    stop_loop(proc)
    store = Store(f"sqlite:///{db}")
    journaled = store.stream_input_seqs(cfg["input_stream"], ids)
    decisions = sum(1 for d in store.decisions() if d["kind"] == "allocate")
    store.close()
    pending = r.xpending(cfg["input_stream"], cfg["consumer_group"])["pending"]
    return {"messages": burst, "feed_seconds": round(fed, 3),
            "seconds_to_all_answered": round(elapsed, 3),
            "messages_per_sec": round(burst / elapsed, 1),
            "decisions": decisions, "mean_messages_per_decision": round(burst / decisions, 1),
            "answered_on_output": len(reader.answered.keys() & set(ids)),
            "journaled": len(journaled), "pending_after": int(pending),
            "dead_lettered": r.xlen(cfg["dead_letter_stream"]),
            "none_lost": len(journaled) == burst == len(reader.answered.keys() & set(ids))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=float, default=500.0)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--tick-ms", type=int, default=1)
    p.add_argument("--burst", type=int, default=50_000)
    p.add_argument("--sqlite-synchronous", choices=("full", "normal"), default="full")
    args = p.parse_args()
    SYNC[0] = args.sqlite_synchronous
    if not 0 < args.rate <= 5_000 or not 0 < args.duration <= 120 or not 0 < args.burst <= 200_000:
        p.error("bounded: 0 < rate <= 5000, 0 < duration <= 120, 0 < burst <= 200000")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        server = RedisServer(work / "redis")
        server.start()
        try:
            r = redis.Redis.from_url(server.url)
            r.config_set("appendonly", "no")
            layer1 = {"prices_key": "l1:prices", "cascade_key": "l1:{symbol}"}
            write_layer1(r, layer1)
            writer = Layer1Writer(r, layer1)
            writer.start()
            result = {"sqlite_synchronous": args.sqlite_synchronous,
                      "latency": latency_phase(work, server.url, args.rate, args.duration,
                                               args.tick_ms),
                      "ingest": ingest_phase(work, server.url, args.burst)}
            writer.stop.set()
        finally:
            server.kill()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
