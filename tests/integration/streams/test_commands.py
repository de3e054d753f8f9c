"""The commands as a user runs them: ``himari-l3 feed`` replays JSON lines into a stream,
``himari-l3 run --paper`` fills the loop's own intents, and the Layer 4 example consumes
what the loop published."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import yaml

from himari_l3.config.schema import Layer3Config, parse_config
from himari_l3.persistence import Store
from redis_support import wait_for
from stream_support import Harness, l2, outputs, stream_config, stream_settings, write_market

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False, cwd=ROOT)


def test_feed_replays_a_recording_in_both_wire_forms(tmp_path: Path, redis_url: str) -> None:
    """Every message line becomes one entry (fields as strings, or one data field)."""
    rec = tmp_path / "l2.jsonl"
    msgs = [{"timestamp": 1, "symbol": "BTCUSDT", "direction": 1, "confidence": 0.7,
             "ood_detected": False, "transition_type": None, "vec": [1, 2]},
            {"action": "BUY", "confidence": 0.6, "regime": "bull", "timestamp": 2}]
    rec.write_text("# recorded\n" + "\n".join(json.dumps(m) for m in msgs) + "\n\n")
    r = redis.Redis.from_url(redis_url)
    for form in ("fields", "data"):
        stream = f"feed-{form}-{tmp_path.name}"
        out = _run("-m", "himari_l3", "feed", "--redis", redis_url, "--stream", stream,
                   "--format", form, "--rate", "500", str(rec))
        assert out.returncode == 0, out.stderr
        assert "sent 2 messages" in out.stdout
        entries = [f for _, f in r.xrange(stream)]
        assert len(entries) == 2
        if form == "fields":
            assert entries[0][b"direction"] == b"1" and entries[0][b"ood_detected"] == b"false"
            assert b"transition_type" not in entries[0] and entries[0][b"vec"] == b"[1,2]"
        else:
            assert json.loads(entries[1][b"data"]) == msgs[1]


def test_feed_stops_at_a_bad_line_naming_it(tmp_path: Path, redis_url: str) -> None:
    """A line that is not a JSON object: exit 2 with file:line."""
    rec = tmp_path / "bad.jsonl"
    rec.write_text('{"a": 1}\n[1, 2]\n')
    out = _run("-m", "himari_l3", "feed", "--redis", redis_url, "--stream", "x", str(rec))
    assert out.returncode == 2 and "bad.jsonl:2" in out.stderr


def test_run_paper_fills_the_loops_own_intents(tmp_path: Path, redis_url: str) -> None:
    """`run --paper` (the file says nothing about paper): the loop's decisions are filled
    by the paper executor at each tick's prices — 'paper' entries with fills in the
    journal, positions in the book; SIGTERM stops it gracefully."""
    data = stream_settings(tmp_path, redis_url)
    data["metrics"] = {"enabled": False}
    cfg = tmp_path / "layer3.yaml"
    cfg.write_text(yaml.safe_dump(data))
    config = parse_config(Layer3Config, data)
    r = redis.Redis.from_url(redis_url)
    now_ms = time.time_ns() // 1_000_000
    write_market(r, config, now_ms)
    r.xadd(config.streams.input_stream, l2(now_ms, "BTCUSDT", confidence=0.9))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HIMARI_L3_PAPER", None)
    log = tmp_path / "loop.log"
    proc = subprocess.Popen([sys.executable, "-m", "himari_l3", "run", "--config", str(cfg),
                             "--paper"], stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            env=env, cwd=tmp_path)
    try:
        wait_for(lambda: outputs(r, config), 30, "the decision on the output stream")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    (out,) = outputs(r, config)
    assert out["intents"] and out["trading_state"]["state"] == "ACTIVE"
    store = Store(config.persistence.url)
    paper = [e["request"] for e in store.book_events() if e["kind"] == "paper"]
    store.close()
    assert paper and paper[0]["fills"][0]["client_order_id"] == \
        out["intents"][0]["client_order_id"]


def test_run_refuses_a_bad_config(tmp_path: Path) -> None:
    """A bad streams key is a config error naming it (exit 2)."""
    cfg = tmp_path / "layer3.yaml"
    cfg.write_text("streams:\n  redis_url: 'redis://:secret@127.0.0.1:6379/0'\n")
    out = _run("-m", "himari_l3", "run", "--config", str(cfg))
    assert out.returncode == 2 and "streams.redis_url" in out.stderr
    assert "secret" not in out.stderr


async def test_layer4_example_consumes_the_loops_output(tmp_path: Path,
                                                        redis_url: str) -> None:
    """examples/layer4_consumer.py reads a decision the loop published, once."""
    cfg = stream_config(tmp_path, redis_url)
    r = redis.Redis.from_url(redis_url)
    h = Harness(cfg)
    async with h:
        write_market(r, cfg, h.now_ms)
        r.xadd(cfg.streams.input_stream, l2(h.now_ms))
        await h.drain()
    [decision] = outputs(r, cfg)
    out = _run(str(ROOT / "examples" / "layer4_consumer.py"), "--redis", redis_url,
               "--stream", cfg.streams.output_stream, "--count", "1", "--block-ms", "500")
    assert out.returncode == 0, out.stderr
    assert f"decision {decision['decision_id']} (portfolio default" in out.stdout
    [intent] = decision["intents"]  # the book's order for the target, in venue symbols
    assert f"intent {intent['client_order_id']}: buy {intent['quantity']} BTCUSDT" in out.stdout
