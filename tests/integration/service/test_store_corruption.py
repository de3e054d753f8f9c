"""Store corruption against a real server process (issue 13, store side).

A WAL cut in half after a SIGKILL used to lose acknowledged entries silently and hand their
decision ids out again; an undecodable newest snapshot stopped start-up although older
snapshots and the whole journal were there. Now start-up refuses the first with an error
naming the seqs (and an operator can accept the loss, after which ids continue above the
lost ones), and restores the second from an older snapshot or a full journal replay, with a
warning and ``persistence_errors{operation="snapshot_decode"}``, to the exact state the
server had acknowledged.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration.service.test_sigkill import free_port, send, start_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def write_config(tmp_path: Path, every: int, interval: float) -> tuple[Path, Path]:
    """(config file, database file) with the given snapshot schedule."""
    db = tmp_path / "l3.sqlite"
    cfg = tmp_path / "layer3.yaml"
    cfg.write_text(f"persistence:\n  url: 'sqlite:///{db}'\n"
                   f"  snapshot_every_decisions: {every}\n  snapshot_interval_sec: {interval}\n")
    return cfg, db


def drive(port: int, n: int) -> list[tuple[int, str]]:
    """Send ``n`` requests one after another; (seq, state digest) of each acknowledgement."""
    intents: list[dict[str, Any]] = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as c:
        return [send(c, i, 0, intents) for i in range(n)]


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL and reap (bounded)."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)


def recorded_ack(db: Path, seq: int, timeout_sec: float = 5.0) -> int:
    """The seq in ``<db>-ack`` once it reaches ``seq`` (its writer thread trails the commits
    by the write in flight; bounded wait), else whatever it holds at the deadline."""
    path = Path(f"{db}-ack")
    deadline = time.monotonic() + timeout_sec
    while True:
        value = int(json.loads(path.read_text())["acked_seq"]) if path.exists() else 0
        if value >= seq or time.monotonic() > deadline:
            return value
        time.sleep(0.01)


def crashed_run(tmp_path: Path, every: int, n: int
                ) -> tuple[Path, Path, Path, int, list[tuple[int, str]]]:
    """Start a server (snapshot every ``every`` entries), acknowledge ``n`` requests, SIGKILL
    it once the acknowledged-seq record caught up: (config, database, log, port, acks)."""
    cfg, db = write_config(tmp_path, every=every, interval=86_400.0)
    log = tmp_path / "server.log"
    port = free_port()
    proc = start_server(cfg, port, log)
    try:
        acked = drive(port, n)
        assert recorded_ack(db, max(s for s, _ in acked)) == max(s for s, _ in acked)
    finally:
        kill(proc)
    return cfg, db, log, port, acked


def start_refused(cfg: Path, port: int, log: Path) -> tuple[int, str]:
    """Start the server expecting it to exit during start-up (bounded); (status, log)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HIMARI_L3_AUTH_TOKEN", None)
    before = log.read_text() if log.exists() else ""
    proc = subprocess.Popen(
        [sys.executable, "-m", "himari_l3.service.main", "--config", str(cfg),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, cwd=cfg.parent)
    try:
        status = proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"the server started:\n{log.read_text()[len(before):]}") from None
    return status, log.read_text()[len(before):]


def test_wal_cut_in_half_after_sigkill_stops_start_up_naming_the_seqs(tmp_path: Path) -> None:
    """SIGKILL, then half the WAL is gone: start-up refuses with the lost seqs named; after
    the operator accepts the loss the server starts and hands out no id twice."""
    cfg, db, log, port, acked = crashed_run(tmp_path, 100_000, 160)  # all in the WAL
    last = max(s for s, _ in acked)
    wal = Path(f"{db}-wal")
    size = wal.stat().st_size
    assert size > 100_000, size
    with wal.open("r+b") as f:
        f.truncate(size // 2)

    status, out = start_refused(cfg, port, log)
    assert status != 0
    assert "start-up refused" in out
    assert f"but seq {last} was acknowledged (recorded in {db}-ack)" in out, out[-3000:]
    conn = sqlite3.connect(db)  # what survived: every seq up to `end`, none after
    end = max(conn.execute(f"SELECT MAX(seq) FROM {t}").fetchone()[0] or 0
              for t in ("decisions", "outcomes", "returns", "config_changes"))
    conn.close()
    assert end < last
    assert f"the journal ends at seq {end} but" in out
    assert f"seq {end + 1}..{last} missing ({last - end} acknowledged entries)" in out
    status, _ = start_refused(cfg, port, log)  # still refused: nothing changed
    assert status != 0

    accepted = subprocess.run(
        [sys.executable, "-m", "himari_l3.persistence", "accept-loss", f"sqlite:///{db}"],
        capture_output=True, text=True, timeout=60, check=False)
    assert accepted.returncode == 0, accepted.stderr
    assert f"accepted as lost: {end + 1}..{last}" in accepted.stdout
    proc = start_server(cfg, port, log)
    try:
        more = drive(port, 1)
        assert more[0][0] > last  # never a reused decision id
    finally:
        kill(proc)


@pytest.mark.parametrize("damaged", ["newest", "all"])
def test_undecodable_snapshot_falls_back_and_restores_the_exact_state(
        tmp_path: Path, damaged: str) -> None:
    """SIGKILL, then the newest snapshot row (or every one) is cut in half: start-up
    restores from an older snapshot (or replays the whole journal), warns, counts
    persistence_errors{operation="snapshot_decode"}, and the digest is the acknowledged one."""
    cfg, db, log, port, acked = crashed_run(tmp_path, 7, 60)
    last, expected = max(acked)
    conn = sqlite3.connect(db)
    kept = conn.execute("SELECT COUNT(*) FROM state_snapshots").fetchone()[0]
    assert kept >= 2
    where = "" if damaged == "all" else " WHERE id = (SELECT MAX(id) FROM state_snapshots)"
    conn.execute("UPDATE state_snapshots SET state = substr(state, 1, length(state) / 2)"
                 + where)
    conn.commit()
    conn.close()

    before = log.read_text()
    proc = start_server(cfg, port, log)
    try:
        base = f"http://127.0.0.1:{port}"
        st: dict[str, Any] = httpx.get(f"{base}/v1/state", params={"digest": "true"},
                                       timeout=10).json()
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert st["learned_state_digest"] == expected
    assert st["service"]["journal_seq"] >= last
    restore = st["service"]["restore"]
    if damaged == "all":
        assert restore["snapshot_seq"] is None and restore["replayed"] >= last
    else:
        assert restore["snapshot_seq"] is not None and restore["snapshot_seq"] < last
    count = 1 if damaged == "newest" else kept
    assert (f'himari_l3_persistence_errors_total{{operation="snapshot_decode"}} {count:.1f}'
            in metrics)
    started = log.read_text()[len(before):]
    assert started.count("is not usable, trying an older one") == count
