"""The store against a real PostgreSQL server (and SQLite): round trips of decisions,
outcomes, returns, config changes and snapshots, and a crash-restore of the service.

The server: ``HIMARI_L3_PG_URL`` if set (``.ci/run`` starts one); otherwise this module
starts a throw-away server itself (Debian's PostgreSQL binaries, run as the ``postgres``
user, data directory in a temp dir, 127.0.0.1 only). When that is impossible the tests skip
with the reason, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from himari_l3.config.schema import Layer3Config, parse_config
from himari_l3.persistence import JournalEntry, Store
from himari_l3.service import create_app

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required under CI: {reason}")
    pytest.skip(f"no PostgreSQL server: {reason} (set HIMARI_L3_PG_URL)")


def _start_server() -> tuple[str, Path]:
    """initdb + pg_ctl start as the postgres user; returns (url, data dir)."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not bins:
        _unavailable("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin")
    bindir = Path(bins[-1]).parent
    as_pg: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            _unavailable("running as root without runuser")
        as_pg = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="himari-pg-"))
    data = base / "data"
    if as_pg:
        shutil.chown(base, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([*as_pg, str(bindir / "initdb"), "-D", str(data), "-A", "trust",
                    "-U", "postgres", "--no-sync"], check=True, capture_output=True)
    subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-l",
                    str(base / "log"), "-w", "-o",
                    f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off",
                    "start"], check=True, capture_output=True)
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", data


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    """A server URL (admin database); stopped at the end if this module started it."""
    url = os.environ.get("HIMARI_L3_PG_URL")
    data: Path | None = None
    if not url:
        try:
            url, data = _start_server()
        except (OSError, subprocess.CalledProcessError) as err:
            _unavailable(f"could not start one: {err!r}")
    assert url is not None
    try:
        with create_engine(url).connect() as conn:
            conn.execute(text("select 1"))
    except Exception as err:
        _unavailable(f"cannot connect to {make_url(url).render_as_string()}: {err}")
    yield url
    if data is not None:
        bindir = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[-1]).parent
        as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast",
                        "stop"], check=False, capture_output=True)
        shutil.rmtree(data.parent, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh database on the server for one test."""
    name = f"himari_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'l3.sqlite'}"
    return str(request.getfixturevalue("pg_url"))


def test_store_round_trip(store_url: str) -> None:
    """Every table round-trips; the journal comes back in seq order; snapshots pruned."""
    store = Store(store_url, keep_snapshots=2)
    store.append([JournalEntry("config", {"seq": 1, "ts_ns": 10, "config_version": "v1",
                                          "config": "{}"})])
    store.record_decision(seq=2, ts_ns=20, kind="allocate", path="rl", config_version="v1",
                          request='{"signals": []}', response='{"decision_id": 2}',
                          trace='{"rl": {"asked": 1}}', rl_results="[]")
    store.append([
        JournalEntry("outcome", {"seq": 4, "ts_ns": 40, "kind": "path", "strategy_id": None,
                                 "symbol": "BTC-USD", "realized_return": 0.01,
                                 "used_rl": True, "config_version": "v1",
                                 "request": '{"symbol": "BTC-USD"}', "response": None}),
        JournalEntry("returns", {"seq": 3, "ts_ns": 30, "config_version": "v1",
                                 "request": '{"returns": {"BTC-USD": 0.01}}',
                                 "response": '{"returns_id": 3}'}),
    ])
    for seq in (2, 3, 4):
        store.save_snapshot(seq=seq, ts_ns=seq * 10, config_version="v1",
                            state=f'{{"seq": {seq}}}')
    assert [e.seq for e in store.journal_after(1)] == [2, 3, 4]
    assert [e.table for e in store.journal_after(0)] == ["config", "decision", "returns",
                                                         "outcome"]
    d = store.decisions()[0]
    assert d["path"] == "rl" and d["trace"] == {"rl": {"asked": 1}}
    assert d["request"] == {"signals": []} and d["response"] == {"decision_id": 2}
    o = store.outcomes()[0]
    assert o["used_rl"] is True and o["realized_return"] == 0.01 and o["response"] is None
    assert store.returns()[0]["request"]["returns"] == {"BTC-USD": 0.01}
    snap = store.latest_snapshot()
    assert snap is not None and snap.seq == 4 and snap.state == '{"seq": 4}'
    assert store.counts()["state_snapshots"] == 2
    assert store.max_seq() == 4
    store.close()
    again = Store(store_url)  # reopening keeps everything and the schema check passes
    assert again.max_seq() == 4 and len(again.decisions(after_seq=1, limit=5)) == 1
    again.close()


async def test_service_restores_from_postgres(pg_url: str) -> None:
    """The service on PostgreSQL: an abandoned run's learned state comes back exactly."""
    cfg = parse_config(Layer3Config, {"persistence": {"url": pg_url,
                                                      "snapshot_every_decisions": 5}})
    from service_support import crashed_run, restarted

    before, seq = await crashed_run(cfg, 5)
    after, info = await restarted(cfg)
    assert after == before and info["journal_seq"] == seq and info["replayed"] >= 1
    app = create_app(cfg, registry=CollectorRegistry())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://l3") as c:
            st = (await c.get("/v1/state")).json()
    assert st["service"]["store"] == "postgresql"


def test_lease_fence_on_both_stores(store_url: str) -> None:
    """The portfolio lease on SQLite and PostgreSQL: a takeover after a silent TTL fences the
    old owner's journal writes out, inside their own transaction."""
    from himari_l3 import ManualClock
    from himari_l3.persistence.lease import Lease, LeaseLost

    clock = ManualClock()
    a, b = (Lease(store_url, "p", name, 5.0, clock) for name in ("a", "b"))
    store_a, store_b = Store(store_url), Store(store_url)
    store_a.fence, store_b.fence = a.fence, b.fence
    row = {"ts_ns": 1, "config_version": "v", "request": "{}"}
    try:
        assert a.try_acquire() and not b.try_acquire()
        store_a.append([JournalEntry("returns", {"seq": 1, **row})])
        clock.advance(6.0)
        assert b.try_acquire() and b.epoch == 2
        with pytest.raises(LeaseLost):
            store_a.append([JournalEntry("returns", {"seq": 2, **row})])
        store_b.append([JournalEntry("returns", {"seq": 2, **row})])
        assert [r["seq"] for r in store_b.returns()] == [1, 2]
        b.release()
        assert a.try_acquire() and a.epoch == 3
    finally:
        for x in (store_a, store_b, a, b):
            x.close()
