"""The store: an append-only journal of every state-changing request, plus snapshots.

Tables (SQLAlchemy Core, the same on SQLite and PostgreSQL; JSON is kept as text)::

    decisions        seq, ts_ns, kind (size | allocate), path (rl | baseline),
                     config_version, request, response, trace, rl_results
    outcomes         seq, ts_ns, kind (trade | path), strategy_id, symbol, realized_return,
                     used_rl, config_version, request, response
    returns          seq, ts_ns, config_version, request, response
    config_changes   seq, ts_ns, config_version, config
    state_snapshots  id, seq, ts_ns, config_version, state
    meta             key, value

``seq`` is one sequence over the four journal tables: the order in which the service applied
the requests to its learned state. A snapshot holds the learned state after every journal
entry with ``seq <= snapshot.seq``; state at any later point is that snapshot plus the
entries after it, replayed in ``seq`` order (see ``himari_l3.runtime.service``).

Durability: each ``append`` is one committed transaction. On SQLite the database runs in WAL
mode with ``synchronous=FULL``, so a commit has reached the disk (fsync of the WAL) before
``append`` returns: an acknowledged request survives a SIGKILL *and* a power cut. (With
``synchronous=NORMAL`` a SIGKILL would lose nothing either, but a power cut could lose the
last commits; measured here a FULL commit costs ~0.3 ms, so there is no reason to accept
that.) The store expects a single writer process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.engine import make_url

__all__ = ["JOURNAL_TABLES", "JournalEntry", "Snapshot", "Store"]

SCHEMA_VERSION = "1"

_md = MetaData()

decisions = Table(
    "decisions", _md,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts_ns", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("path", String(16), nullable=False),
    Column("config_version", String(64), nullable=False),
    Column("request", Text, nullable=False),
    Column("response", Text),
    Column("trace", Text),
    Column("rl_results", Text),
)
outcomes = Table(
    "outcomes", _md,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts_ns", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("strategy_id", String(64)),
    Column("symbol", String(64), nullable=False),
    Column("realized_return", Float, nullable=False),
    Column("used_rl", Boolean),
    Column("config_version", String(64), nullable=False),
    Column("request", Text, nullable=False),
    Column("response", Text),
)
returns = Table(
    "returns", _md,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts_ns", BigInteger, nullable=False),
    Column("config_version", String(64), nullable=False),
    Column("request", Text, nullable=False),
    Column("response", Text),
)
config_changes = Table(
    "config_changes", _md,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts_ns", BigInteger, nullable=False),
    Column("config_version", String(64), nullable=False),
    Column("config", Text, nullable=False),
)
state_snapshots = Table(
    "state_snapshots", _md,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("seq", BigInteger, nullable=False, index=True),
    Column("ts_ns", BigInteger, nullable=False),
    Column("config_version", String(64), nullable=False),
    Column("state", Text, nullable=False),
)
meta = Table(
    "meta", _md,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

JOURNAL_TABLES: dict[str, Table] = {
    "decision": decisions, "outcome": outcomes, "returns": returns, "config": config_changes,
}
_INSERTS = {name: insert(table) for name, table in JOURNAL_TABLES.items()}


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One row of the journal: ``table`` is a key of `JOURNAL_TABLES`; ``row`` its columns
    (JSON columns as already-serialised text)."""

    table: str
    row: dict[str, Any]

    @property
    def seq(self) -> int:
        return int(self.row["seq"])


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A committed learned-state snapshot (``state`` is JSON text)."""

    id: int
    seq: int
    ts_ns: int
    config_version: str
    state: str


class Store:
    """Journal and snapshots behind one SQLAlchemy engine.

    ``url``: ``sqlite:///relative/path.sqlite`` (relative to the working directory),
    ``sqlite:////abs/path.sqlite``, or ``postgresql+psycopg://user@host:port/db``.
    ``keep_snapshots``: older snapshots are deleted in the transaction that adds a new one.
    """

    def __init__(self, url: str, *, keep_snapshots: int = 3,
                 sqlite_synchronous: str = "full") -> None:
        if keep_snapshots < 1:
            raise ValueError(f"keep_snapshots was {keep_snapshots!r}, expected >= 1")
        parsed = make_url(url)
        self.url = url
        self.dialect = parsed.get_backend_name()
        self.keep_snapshots = keep_snapshots
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            # The service writes from worker threads (one at a time).
            kwargs["connect_args"] = {"check_same_thread": False}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(url, **kwargs)
        if self.dialect == "sqlite":
            if sqlite_synchronous not in ("full", "normal"):
                raise ValueError(f"sqlite_synchronous was {sqlite_synchronous!r}, expected "
                                 "'full' or 'normal'")
            level = sqlite_synchronous.upper()
            event.listen(self.engine, "connect",
                         lambda conn, record: _sqlite_pragmas(conn, record, level))
        _md.create_all(self.engine)
        with self.engine.begin() as conn:
            have = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version"))
            found = have.scalar_one_or_none()
            if found is None:
                conn.execute(insert(meta).values(key="schema_version", value=SCHEMA_VERSION))
                conn.execute(insert(meta).values(key="created_ts_ns",
                                                 value=str(time.time_ns())))
            elif found != SCHEMA_VERSION:
                raise RuntimeError(f"store schema_version was {found!r}, "
                                   f"expected {SCHEMA_VERSION!r}")

    # ------------------------------------------------------------------ writes
    def append(self, entries: Sequence[JournalEntry]) -> None:
        """Insert journal entries in one transaction (committed and durable on return)."""
        with self.engine.begin() as conn:
            for e in entries:
                # One prebuilt statement per table: SQLAlchemy caches its compiled form
                # (``insert(t).values(**row)`` would be a new statement per call).
                conn.execute(_INSERTS[e.table], [e.row])

    def record_decision(self, *, seq: int, ts_ns: int, kind: str, path: str,  # noqa: PLR0913 - one journal row's columns, keyword-only
                        config_version: str, request: str, response: str | None = None,
                        trace: str | None = None, rl_results: str | None = None) -> None:
        """Append one decision (audit record and journal entry) and commit."""
        self.append([JournalEntry("decision", {
            "seq": seq, "ts_ns": ts_ns, "kind": kind, "path": path,
            "config_version": config_version, "request": request, "response": response,
            "trace": trace, "rl_results": rl_results})])

    def save_snapshot(self, *, seq: int, ts_ns: int, config_version: str, state: str) -> int:
        """Commit a snapshot (and prune old ones) in one transaction; returns its id."""
        with self.engine.begin() as conn:
            res = conn.execute(insert(state_snapshots).values(
                seq=seq, ts_ns=ts_ns, config_version=config_version, state=state))
            new_id = int(res.inserted_primary_key[0])  # type: ignore[index]
            keep = select(state_snapshots.c.id).order_by(
                state_snapshots.c.id.desc()).limit(self.keep_snapshots).subquery()
            conn.execute(delete(state_snapshots).where(
                state_snapshots.c.id.not_in(select(keep.c.id))))
        return new_id

    def checkpoint(self) -> None:
        """Copy the SQLite WAL into the database (PASSIVE: never blocks writers or readers);
        a no-op on PostgreSQL. The service runs it after each snapshot, in a worker thread."""
        if self.dialect != "sqlite":
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    # ------------------------------------------------------------------- reads
    def latest_snapshot(self) -> Snapshot | None:
        """The newest committed snapshot, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(state_snapshots).order_by(
                state_snapshots.c.id.desc()).limit(1)).mappings().first()
        if row is None:
            return None
        return Snapshot(int(row["id"]), int(row["seq"]), int(row["ts_ns"]),
                        str(row["config_version"]), str(row["state"]))

    def journal_after(self, seq: int) -> list[JournalEntry]:
        """Every journal entry with ``seq`` greater than ``seq``, in ``seq`` order."""
        out: list[JournalEntry] = []
        with self.engine.connect() as conn:
            for name, table in JOURNAL_TABLES.items():
                rows = conn.execute(select(table).where(table.c.seq > seq)).mappings()
                out.extend(JournalEntry(name, dict(r)) for r in rows)
        out.sort(key=lambda e: e.seq)
        return out

    def max_seq(self) -> int:
        """The highest ``seq`` in the journal or the snapshots (0 when empty)."""
        best = 0
        with self.engine.connect() as conn:
            for table in (*JOURNAL_TABLES.values(), state_snapshots):
                value = conn.execute(select(func.max(table.c.seq))).scalar()
                best = max(best, int(value or 0))
        return best

    def decisions(self, *, after_seq: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Decision records in ``seq`` order, JSON columns parsed (for audits and tests)."""
        return list(self._rows(decisions, after_seq, limit,
                               ("request", "response", "trace", "rl_results")))

    def outcomes(self, *, after_seq: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Outcome records in ``seq`` order, JSON columns parsed."""
        return list(self._rows(outcomes, after_seq, limit, ("request", "response")))

    def returns(self, *, after_seq: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Correlation-return records in ``seq`` order, JSON columns parsed."""
        return list(self._rows(returns, after_seq, limit, ("request", "response")))

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        tables = {t.name: t for t in (*JOURNAL_TABLES.values(), state_snapshots)}
        with self.engine.connect() as conn:
            return {name: int(conn.execute(select(func.count()).select_from(t)).scalar() or 0)
                    for name, t in tables.items()}

    def _rows(self, table: Table, after_seq: int, limit: int | None,
              json_cols: tuple[str, ...]) -> Iterator[dict[str, Any]]:
        q = select(table).where(table.c.seq > after_seq).order_by(table.c.seq)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            for r in conn.execute(q).mappings():
                d = dict(r)
                for c in json_cols:
                    if d.get(c) is not None:
                        d[c] = json.loads(d[c])
                yield d

    def close(self) -> None:
        """Dispose of the connection pool (idempotent)."""
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any, synchronous: str = "FULL") -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA synchronous={synchronous}")  # FULL or NORMAL, checked by the caller
    cur.execute("PRAGMA busy_timeout=5000")
    # No checkpoint inside a request's commit (copying the WAL into the database and
    # fsyncing it took tens of ms): `Store.checkpoint` runs them off the request path.
    cur.execute("PRAGMA wal_autocheckpoint=0")
    cur.close()
