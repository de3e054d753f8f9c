"""One active owner per portfolio: a lease row beside the journal, and a fence inside it.

The journal is the source of truth, so what must be impossible is two processes *committing*
to one portfolio's journal. The lease therefore lives in the journal's own database (a row of
``leases``), and every journal or snapshot transaction checks it (`Lease.fence`): it updates
the lease row ``WHERE portfolio = ? AND epoch = <the epoch this process acquired>``, in the
same transaction as the insert, and refuses to commit (`LeaseLost`) when no row matched. The
epoch is the fencing token: whoever takes the portfolio over increments it first, so a
process that paused past its lease (GC, a stopped VM, a partition) and wakes up mid-request
cannot commit anything afterwards — the check does not depend on any clock.

Liveness does use time, measured only on each process's own monotonic clock (no clock
comparison between machines): the owner bumps ``beat`` every third of the TTL (`renew`); a
standby polls the row and takes over (`try_acquire`: a compare-and-set on the epoch and beat
it saw) once it has seen neither change for a whole TTL, or at once after a graceful
`release`. An owner whose renewals have failed for a whole TTL considers the lease lost and
stops before a standby can have taken over (`expired`); the fence covers the race at the
boundary.

Why not a Redis ``SET NX PX`` lock: it expires on Redis's clock while the journal is in the
database, and a paused holder would still commit after expiry unless the database checked a
fencing token anyway; a Redis failover can also lose the key. A PostgreSQL advisory lock is
tied to a session: a dropped connection releases it while the process keeps going on a new
pooled connection. A lease row checked in the journal's own transaction has neither gap, and
works the same on SQLite (one machine) and PostgreSQL (several).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    MetaData,
    String,
    Table,
    create_engine,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from .._clock import SYSTEM_CLOCK, Clock

__all__ = ["Lease", "LeaseLost", "LeaseView"]

log = logging.getLogger(__name__)

_md = MetaData()
leases = Table(
    "leases", _md,
    Column("portfolio", String(64), primary_key=True),
    Column("owner", String(200), nullable=False),  # "" after a graceful release
    Column("epoch", BigInteger, nullable=False),
    Column("beat", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
)


class LeaseLost(Exception):
    """This process no longer owns the portfolio: nothing it writes may commit."""


@dataclass(frozen=True, slots=True)
class LeaseView:
    """The lease row as one read saw it."""

    owner: str
    epoch: int
    beat: int


class Lease:
    """The lease of ``portfolio`` in the database at ``url`` for ``owner`` (this process).

    ``ttl_sec``: an owner that has not renewed for this long (as a standby's monotonic clock
    measures it) loses the portfolio. ``clock``: monotonic time (tests inject a manual one).
    """

    def __init__(self, url: str, portfolio: str, owner: str, ttl_sec: float,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        if not owner:
            raise ValueError("owner was '', expected a non-empty name")
        kwargs = {}
        if make_url(url).get_backend_name() == "sqlite":
            kwargs["connect_args"] = {"timeout": 5.0, "check_same_thread": False}
        self.engine = create_engine(url, **kwargs)
        _md.create_all(self.engine)
        self.portfolio = portfolio
        self.owner = owner
        self.ttl_sec = ttl_sec
        self.clock = clock
        self.epoch: int | None = None  # set while this process owns the portfolio
        self._seen: LeaseView | None = None
        self._seen_at = 0.0
        self._renewed_at = 0.0

    # ------------------------------------------------------------------ standby
    def observe(self) -> LeaseView | None:
        """The row as it is now (None: nobody ever owned the portfolio)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(leases.c.owner, leases.c.epoch, leases.c.beat).where(
                leases.c.portfolio == self.portfolio)).first()
        return None if row is None else LeaseView(str(row[0]), int(row[1]), int(row[2]))

    def try_acquire(self) -> bool:
        """One standby step: take the portfolio if it is free, released, or its owner has
        been silent for a whole TTL of this process's clock. True when this process owns it."""
        if self.epoch is not None:
            return True
        view, now = self.observe(), self.clock.monotonic()
        if view is None:
            return self._insert(now)
        if view != self._seen:  # the owner is alive (or another took over): wait a full TTL
            self._seen, self._seen_at = view, now
            if view.owner:
                return False
        elif view.owner and now - self._seen_at < self.ttl_sec:
            return False
        return self._take(view, now)

    def _insert(self, now: float) -> bool:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(leases).values(portfolio=self.portfolio, owner=self.owner,
                                                   epoch=1, beat=0, last_seq=0))
        except IntegrityError:  # another standby inserted first
            return False
        self._acquired(1, now)
        return True

    def _take(self, view: LeaseView, now: float) -> bool:
        with self.engine.begin() as conn:
            res = conn.execute(update(leases).where(
                (leases.c.portfolio == self.portfolio) & (leases.c.epoch == view.epoch)
                & (leases.c.beat == view.beat) & (leases.c.owner == view.owner)).values(
                owner=self.owner, epoch=view.epoch + 1, beat=0))
        if res.rowcount != 1:  # another standby won the compare-and-set
            return False
        self._acquired(view.epoch + 1, now)
        return True

    def _acquired(self, epoch: int, now: float) -> None:
        self.epoch = epoch
        self._renewed_at = now
        log.info("lease of portfolio %r acquired by %s (epoch %d)", self.portfolio,
                 self.owner, epoch)

    # -------------------------------------------------------------------- owner
    def renew(self) -> bool:
        """Bump the beat (the owner's heartbeat). False when the lease is lost (another
        process took over); a database error propagates (the caller retries)."""
        epoch = self.epoch
        if epoch is None:
            return False
        with self.engine.begin() as conn:
            res = conn.execute(update(leases).where(
                (leases.c.portfolio == self.portfolio) & (leases.c.epoch == epoch)
                & (leases.c.owner == self.owner)).values(beat=leases.c.beat + 1))
        if res.rowcount != 1:
            self.epoch = None
            return False
        self._renewed_at = self.clock.monotonic()
        return True

    def expired(self) -> bool:
        """True when renewals have failed for a whole TTL: stop acting as the owner."""
        return self.epoch is None or self.clock.monotonic() - self._renewed_at >= self.ttl_sec

    def fence(self, conn: Connection) -> None:
        """Inside a journal transaction: refuse to commit unless this process still holds
        the epoch it acquired (the fencing token; see the module docstring)."""
        epoch = self.epoch
        if epoch is None:
            raise LeaseLost(f"portfolio {self.portfolio!r} is not owned by {self.owner}")
        res = conn.execute(update(leases).where(
            (leases.c.portfolio == self.portfolio) & (leases.c.epoch == epoch)
            & (leases.c.owner == self.owner)).values(last_seq=leases.c.last_seq + 1))
        if res.rowcount != 1:
            self.epoch = None
            raise LeaseLost(f"portfolio {self.portfolio!r} was taken over (epoch {epoch} "
                            "is no longer current)")

    def release(self) -> None:
        """Give the portfolio up at once (graceful shutdown): a standby takes over on its
        next poll instead of waiting out the TTL."""
        epoch, self.epoch = self.epoch, None
        if epoch is None:
            return
        with self.engine.begin() as conn:
            conn.execute(update(leases).where(
                (leases.c.portfolio == self.portfolio) & (leases.c.epoch == epoch)
                & (leases.c.owner == self.owner)).values(owner="", beat=leases.c.beat + 1))
        log.info("lease of portfolio %r released by %s", self.portfolio, self.owner)

    def close(self) -> None:
        self.engine.dispose()
