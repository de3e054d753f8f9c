"""The store: an append-only journal of every state-changing request, plus snapshots.

Tables (SQLAlchemy Core, the same on SQLite and PostgreSQL; JSON is kept as text)::

    decisions        seq, ts_ns, kind (size | allocate), path (rl | baseline),
                     config_version, request, response, trace, rl_results
    outcomes         seq, ts_ns, kind (trade | path), strategy_id, symbol, realized_return,
                     used_rl, config_version, request, response
    returns          seq, ts_ns, config_version, request, response
    book_events      seq, ts_ns, kind (fills | reconcile), portfolio, config_version,
                     request, response
    config_changes   seq, ts_ns, config_version, config
    state_snapshots  id, seq, ts_ns, config_version, state
    stream_inputs    stream, msg_id, seq   (which decision answered each stream message)
    meta             key, value

``seq`` is one sequence over the five journal tables: the order in which the service applied
the requests to its learned state. A snapshot holds the learned state after every journal
entry with ``seq <= snapshot.seq``; state at any later point is that snapshot plus the
entries after it, replayed in ``seq`` order (see ``himari_l3.runtime.service``).

Integrity (``persistence/recovery.py`` runs the checks at start-up): ``snapshot_digests``
holds the SHA-256 of each snapshot's text (a snapshot that no longer matches it, or no
longer decodes, is skipped for an older one); the highest committed ``seq`` is also kept
*outside* the database — for an on-disk SQLite file in a sidecar file ``<file>-ack``
(`AckRecord`), elsewhere in ``meta`` (PostgreSQL does not lose committed rows) — so a
journal that ends below it is seen; ranges of ``seq`` an operator accepted as lost are kept
in ``meta`` (``lost_seqs``), so they are never handed out again.

Durability: each ``append`` is one committed transaction. On SQLite the database runs in WAL
mode with ``synchronous=FULL``, so a commit has reached the disk (fsync of the WAL) before
``append`` returns: an acknowledged request survives a SIGKILL *and* a power cut. (With
``synchronous=NORMAL`` a SIGKILL would lose nothing either, but a power cut could lose the
last commits; measured here a FULL commit costs ~0.3 ms, so there is no reason to accept
that.) The store expects a single writer process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    literal_column,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError

from .ack import AckRecord

__all__ = ["JOURNAL_TABLES", "JournalEntry", "Snapshot", "Store"]

log = logging.getLogger(__name__)

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
book_events = Table(
    "book_events", _md,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts_ns", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("portfolio", String(64)),
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
snapshot_digests = Table(
    "snapshot_digests", _md,
    Column("id", Integer, primary_key=True, autoincrement=False),  # state_snapshots.id
    Column("sha256", String(64), nullable=False),
)
# Which decision answered each stream message (the live loop's idempotency: a message
# journaled here is never applied again). Written in the decision's transaction; not part of
# the seq-ordered journal (nothing is replayed from it).
stream_inputs = Table(
    "stream_inputs", _md,
    Column("stream", String(200), primary_key=True),
    Column("msg_id", String(64), primary_key=True),
    Column("seq", BigInteger, nullable=False),
)
meta = Table(
    "meta", _md,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

JOURNAL_TABLES: dict[str, Table] = {
    "decision": decisions, "outcome": outcomes, "returns": returns, "book": book_events,
    "config": config_changes,
}
_INSERTS = {name: insert(table) for name, table in JOURNAL_TABLES.items()}
_INSERTS["stream_input"] = insert(stream_inputs)
_ACK_UPDATE = update(meta).where(meta.c.key == "acked_seq").values(value=bindparam("seq"))


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
    """A committed learned-state snapshot (``state`` is JSON text; ``sha256`` the digest
    recorded when it was written, None for a snapshot written before digests existed)."""

    id: int
    seq: int
    ts_ns: int
    config_version: str
    state: str
    sha256: str | None = None

    def intact(self) -> bool:
        """True unless the text no longer matches its recorded digest."""
        return self.sha256 is None or _sha256(self.state) == self.sha256


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class Store:
    """Journal and snapshots behind one SQLAlchemy engine.

    ``url``: ``sqlite:///relative/path.sqlite`` (relative to the working directory),
    ``sqlite:////abs/path.sqlite``, or ``postgresql+psycopg://user@host:port/db``.
    ``keep_snapshots``: older snapshots are deleted in the transaction that adds a new one.
    ``ack_path``: where the acknowledged seq is recorded (default ``<sqlite file>-ack``; in
    ``meta`` for PostgreSQL and in-memory SQLite). ``on_error(operation)`` is called when
    recording it fails (the commit itself stands; `recovery` wires it to the metrics).
    """

    def __init__(self, url: str, *, keep_snapshots: int = 3,
                 sqlite_synchronous: str = "full", ack_path: str | None = None) -> None:
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
        database = parsed.database or ""
        if ack_path is None and self.dialect == "sqlite" and database not in ("", ":memory:"):
            ack_path = f"{database}-ack"
        self.on_error: Callable[[str], None] | None = None
        # Checked inside every journal and snapshot transaction when set (the live loop's
        # lease: a writer that lost its portfolio cannot commit; persistence/lease.py).
        self.fence: Callable[[Connection], None] | None = None
        self.ack = (AckRecord(ack_path, on_error=lambda: self._report("ack_record"))
                    if ack_path is not None else None)
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
            for key, value in (("acked_seq", "0"), ("lost_seqs", "[]")):
                if conn.execute(select(meta.c.value).where(meta.c.key == key)).first() is None:
                    conn.execute(insert(meta).values(key=key, value=value))

    # ------------------------------------------------------------------ writes
    def append(self, entries: Sequence[JournalEntry]) -> None:
        """Insert journal entries in one transaction (committed and durable on return),
        then post the highest ``seq`` to the acknowledged-seq record (`AckRecord`)."""
        if not entries:
            return
        top = max(e.seq for e in entries)
        with self.engine.begin() as conn:
            if self.fence is not None:
                self.fence(conn)
            for e in entries:
                # One prebuilt statement per table: SQLAlchemy caches its compiled form
                # (``insert(t).values(**row)`` would be a new statement per call).
                conn.execute(_INSERTS[e.table], [e.row])
            if self.ack is None:
                conn.execute(_ACK_UPDATE, {"seq": str(top)})
        if self.ack is not None:
            self.ack.post(top)  # written by its thread: see persistence/ack.py for why

    def record_decision(self, *, seq: int, ts_ns: int, kind: str, path: str,  # noqa: PLR0913 - one journal row's columns, keyword-only
                        config_version: str, request: str, response: str | None = None,
                        trace: str | None = None, rl_results: str | None = None) -> None:
        """Append one decision (audit record and journal entry) and commit."""
        self.append([JournalEntry("decision", {
            "seq": seq, "ts_ns": ts_ns, "kind": kind, "path": path,
            "config_version": config_version, "request": request, "response": response,
            "trace": trace, "rl_results": rl_results})])

    def save_snapshot(self, *, seq: int, ts_ns: int, config_version: str, state: str) -> int:
        """Commit a snapshot and its digest (and prune old ones) in one transaction; then
        make the acknowledged-seq record durable. Returns the snapshot's id."""
        digest = _sha256(state)
        with self.engine.begin() as conn:
            if self.fence is not None:
                self.fence(conn)
            res = conn.execute(insert(state_snapshots).values(
                seq=seq, ts_ns=ts_ns, config_version=config_version, state=state))
            new_id = int(res.inserted_primary_key[0])  # type: ignore[index]
            conn.execute(insert(snapshot_digests).values(id=new_id, sha256=digest))
            keep = select(state_snapshots.c.id).order_by(
                state_snapshots.c.id.desc()).limit(self.keep_snapshots).subquery()
            conn.execute(delete(state_snapshots).where(
                state_snapshots.c.id.not_in(select(keep.c.id))))
            conn.execute(delete(snapshot_digests).where(
                snapshot_digests.c.id.not_in(select(state_snapshots.c.id))))
        if self.ack is not None:
            try:
                self.ack.sync()
            except OSError:
                log.exception("syncing the acknowledged-seq record %s failed", self.ack.path)
                self._report("ack_record")
        return new_id

    def _report(self, operation: str) -> None:
        if self.on_error is not None:
            self.on_error(operation)

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
        return next(self.snapshots(), None)

    def snapshots(self, newest_first: bool = True) -> Iterator[Snapshot]:
        """Every kept snapshot with its recorded digest, one row loaded at a time."""
        order = state_snapshots.c.id.desc() if newest_first else state_snapshots.c.id.asc()
        with self.engine.connect() as conn:
            ids = [int(i) for i in conn.execute(select(state_snapshots.c.id).order_by(order))
                   .scalars()]
        for snap_id in ids:
            with self.engine.connect() as conn:
                row = conn.execute(
                    select(state_snapshots, snapshot_digests.c.sha256)
                    .select_from(state_snapshots.outerjoin(
                        snapshot_digests, snapshot_digests.c.id == state_snapshots.c.id))
                    .where(state_snapshots.c.id == snap_id)).mappings().first()
            if row is not None:  # pruned meanwhile
                yield Snapshot(int(row["id"]), int(row["seq"]), int(row["ts_ns"]),
                               str(row["config_version"]), str(row["state"]),
                               None if row["sha256"] is None else str(row["sha256"]))

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
        """The highest ``seq`` in the journal, the snapshots or a range accepted as lost (0
        when empty): the next request gets a higher one, so no id is handed out twice."""
        best = max((hi for _, hi in self.lost_ranges()), default=0)
        with self.engine.connect() as conn:
            for table in (*JOURNAL_TABLES.values(), state_snapshots):
                value = conn.execute(select(func.max(table.c.seq))).scalar()
                best = max(best, int(value or 0))
        return best

    # --------------------------------------------------------------- integrity
    def acked_seq(self) -> int | None:
        """The highest seq recorded as committed (None: never recorded). ValueError when the
        record cannot be read."""
        if self.ack is not None:
            self.ack.flush()  # what this process posted is on file first
            return self.ack.read()
        with self.engine.connect() as conn:
            value = conn.execute(select(meta.c.value).where(meta.c.key == "acked_seq")).scalar()
        return int(value) if value is not None else None

    def journal_bounds(self) -> tuple[int, int, int]:
        """(rows, lowest seq, highest seq) over the journal tables."""
        rows, lo, hi = 0, 0, 0
        with self.engine.connect() as conn:
            for table in JOURNAL_TABLES.values():
                n, a, b = conn.execute(select(func.count(), func.min(table.c.seq),
                                              func.max(table.c.seq))).one()
                if n:
                    lo = int(a) if rows == 0 else min(lo, int(a))
                    hi = max(hi, int(b))
                    rows += int(n)
        return rows, lo, hi

    def journal_holes(self) -> tuple[list[tuple[int, int]], list[int]]:
        """(ranges ``(first, last)`` of seq missing from 1..max, seqs present in two journal
        tables). Both empty for a contiguous journal: rows are counted first (a missing seq
        and a duplicate would cancel out there, but the service never writes a duplicate),
        and the ordered scan runs only on a mismatch."""
        rows, lo, hi = self.journal_bounds()
        if rows == hi and lo in (0, 1):
            return [], []
        seqs = union_all(*(select(t.c.seq.label("seq")) for t in JOURNAL_TABLES.values())
                         ).subquery()
        ordered = select(seqs.c.seq, func.lag(seqs.c.seq).over(order_by=seqs.c.seq)
                         .label("prev")).subquery()
        query = select(ordered.c.seq, ordered.c.prev).where(or_(
            ordered.c.prev.is_(None) & (ordered.c.seq != literal_column("1")),
            ordered.c.prev.is_not(None) & (ordered.c.seq != ordered.c.prev + 1)))
        missing: list[tuple[int, int]] = []
        duplicates: list[int] = []
        with self.engine.connect() as conn:
            for seq, prev in conn.execute(query):
                if prev is not None and seq == prev:
                    duplicates.append(int(seq))
                else:
                    missing.append((int(prev or 0) + 1, int(seq) - 1))
        return missing, duplicates

    def quick_check(self) -> list[str]:
        """SQLite's ``PRAGMA quick_check`` problems (empty when "ok"; always on PostgreSQL)."""
        if self.dialect != "sqlite":
            return []
        try:
            with self.engine.connect() as conn:
                found = [str(r[0]) for r in conn.exec_driver_sql("PRAGMA quick_check")]
        except DatabaseError as err:  # damaged beyond what quick_check can walk
            return [str(err.orig)]
        return [] if found == ["ok"] else found

    def lost_ranges(self) -> list[tuple[int, int]]:
        """Ranges of seq an operator accepted as lost (`accept_lost`)."""
        with self.engine.connect() as conn:
            value = conn.execute(select(meta.c.value).where(meta.c.key == "lost_seqs")).scalar()
        return [(int(a), int(b)) for a, b in json.loads(value or "[]")]

    def accept_lost(self, ranges: Sequence[tuple[int, int]]) -> None:
        """Record ``ranges`` of seq as lost on purpose: integrity checks stop reporting them
        and `max_seq` stays above them."""
        merged = sorted({*self.lost_ranges(), *((int(a), int(b)) for a, b in ranges)})
        with self.engine.begin() as conn:
            conn.execute(update(meta).where(meta.c.key == "lost_seqs")
                         .values(value=json.dumps(merged)))

    def stream_input_seqs(self, stream: str, msg_ids: Sequence[str]) -> dict[str, int]:
        """{message id: seq of the decision that answered it} for those of ``msg_ids`` of
        ``stream`` that are journaled."""
        out: dict[str, int] = {}
        ids = list(dict.fromkeys(msg_ids))
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):  # bounded IN lists
                rows = conn.execute(select(stream_inputs.c.msg_id, stream_inputs.c.seq).where(
                    (stream_inputs.c.stream == stream)
                    & stream_inputs.c.msg_id.in_(ids[i:i + 500])))
                out.update({str(m): int(q) for m, q in rows})
        return out

    def decision(self, seq: int) -> dict[str, Any] | None:
        """The decision record ``seq`` (JSON columns parsed), or None."""
        rows = self.decisions(after_seq=seq - 1, limit=1)
        return rows[0] if rows and int(rows[0]["seq"]) == seq else None

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

    def book_events(self, *, after_seq: int = 0,
                    limit: int | None = None) -> list[dict[str, Any]]:
        """Fills and reconcile records in ``seq`` order, JSON columns parsed."""
        return list(self._rows(book_events, after_seq, limit, ("request", "response")))

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
        """Write the acknowledged-seq record out and dispose of the connection pool
        (idempotent)."""
        if self.ack is not None:
            self.ack.close()
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
