"""Start-up checks of the store, and the snapshot to restore from.

`checked_snapshot` is what the service's restore calls instead of taking the newest snapshot
on trust:

1. at start-up, `verify` the store and refuse to start (`StoreIntegrityError`, naming the
   seqs) when SQLite's ``PRAGMA quick_check`` reports damage, when ``seq`` has a gap or a
   duplicate across the journal tables, when the journal ends below the acknowledged
   seq recorded outside the database (`AckRecord`), or below a snapshot's seq. Each of these
   means acknowledged requests are gone: starting anyway would lose them silently and hand
   their decision ids out again;
2. return the newest snapshot whose text still matches its recorded SHA-256 and decodes to a
   learned-state object; a snapshot that does not is skipped for the next older one (or,
   when none is left, None: a full replay of the journal), with a warning and
   ``persistence_errors{operation="snapshot_decode"}``.

An operator who accepts a loss (no backup to restore) records it with `accept_loss` —
``python -m himari_l3.persistence accept-loss URL`` — after which the lost seqs are
tolerated by the checks and never handed out again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url

from ..events import StoreFailed
from ..observers import Observer
from .store import Snapshot, Store

__all__ = ["Losses", "StoreIntegrityError", "accept_loss", "checked_snapshot", "find_losses",
           "verify"]

log = logging.getLogger(__name__)

Ranges = list[tuple[int, int]]


@dataclass
class Losses:
    """What `find_losses` found: a description per problem, the seq ranges lost, and
    whether there is damage that is not a lost range (a failed quick_check, a duplicate)."""

    problems: list[str] = field(default_factory=list)
    lost: Ranges = field(default_factory=list)
    damaged: bool = False


class StoreIntegrityError(RuntimeError):
    """The store lost or damaged committed data; start-up is refused. ``losses`` says what
    was found (``losses.lost``: the seq ranges `accept_loss` would record)."""

    def __init__(self, losses: Losses, url: str) -> None:
        self.losses = losses
        remedy = "Restore the database from a backup"
        if losses.lost and not losses.damaged:
            remedy += (", or accept the loss: python -m himari_l3.persistence accept-loss "
                       f"'{url}' (records the seqs as lost; new ids continue after them)")
        super().__init__("the store lost or damaged acknowledged data; start-up refused so "
                         "that no loss is silent and no decision id is handed out twice: "
                         + "; ".join(losses.problems) + ". " + remedy + ".")


def _minus(ranges: Ranges, accepted: Ranges) -> Ranges:
    """``ranges`` with every seq of ``accepted`` removed."""
    out: Ranges = []
    for lo, hi in ranges:
        pieces = [(lo, hi)]
        for a, b in accepted:
            pieces = [p for x, y in pieces for p in ((x, min(y, a - 1)), (max(x, b + 1), y))
                      if p[0] <= p[1]]
        out.extend(pieces)
    return out


def _seqs(ranges: Ranges) -> str:
    return ", ".join(f"{a}" if a == b else f"{a}..{b}" for a, b in ranges)


def find_losses(store: Store) -> Losses:
    """What the store lost or damaged (nothing for a healthy store). Ranges already
    accepted as lost are not reported."""
    found = Losses()
    damage = store.quick_check()
    if damage:  # the other checks would read a damaged file: report this alone
        found.problems.append(f"SQLite quick_check failed: {'; '.join(damage[:5])}")
        found.damaged = True
        return found
    accepted = store.lost_ranges()
    missing, duplicates = store.journal_holes()
    missing = _minus(missing, accepted)
    if missing:
        n = sum(b - a + 1 for a, b in missing)
        found.problems.append(f"the journal has gaps: seq {_seqs(missing)} missing "
                              f"({n} entries)")
        found.lost.extend(missing)
    if duplicates:
        found.problems.append(f"seq {_seqs([(d, d) for d in duplicates])} appears in two "
                              "journal tables")
        found.damaged = True
    _, _, end = store.journal_bounds()
    try:
        acked = store.acked_seq()
    except ValueError as err:  # an unreadable record is no evidence either way
        log.warning("acknowledged seq not checked: %s", err)
        acked = None
    newest = max((s.seq for s in store.snapshots()), default=0)
    where = str(store.ack.path) if store.ack is not None else "the store's meta table"
    for top, what in ((acked, f"was acknowledged (recorded in {where})"),
                      (newest, "is in a snapshot")):
        behind = _minus([(end + 1, top)], accepted) if top is not None and top > end else []
        behind = _minus(behind, found.lost)
        if behind:
            n = sum(b - a + 1 for a, b in behind)
            found.problems.append(f"the journal ends at seq {end} but seq {top} {what}: seq "
                                  f"{_seqs(behind)} missing ({n} acknowledged entries)")
            found.lost.extend(behind)
    found.lost.sort()
    return found


def verify(store: Store) -> None:
    """Raise `StoreIntegrityError` unless the store is intact (see the module docstring)."""
    found = find_losses(store)
    if found.problems:
        raise StoreIntegrityError(found, make_url(store.url).render_as_string(
            hide_password=True))


def accept_loss(store: Store) -> Ranges:
    """Record the seqs the store lost as accepted (the operator has no backup), so the
    service can start; new ids continue after them. Damage that is not a lost range (a
    failed quick_check, a duplicate seq) cannot be accepted: `StoreIntegrityError`."""
    found = find_losses(store)
    if found.damaged:
        raise StoreIntegrityError(found, make_url(store.url).render_as_string(
            hide_password=True))
    if found.lost:
        store.accept_lost(found.lost)
        log.warning("accepted as lost: seq %s", _seqs(found.lost))
    return found.lost


def _undecodable(snap: Snapshot) -> str | None:
    if not snap.intact():
        return "its text no longer matches the SHA-256 recorded when it was written"
    try:
        state = json.loads(snap.state)
    except ValueError as err:
        return f"invalid JSON ({err})"
    if not isinstance(state, dict) or not isinstance(state.get("hybrid"), dict):
        return "not a learned-state object (no 'hybrid')"
    if state.get("seq", snap.seq) != snap.seq:
        return f"it says seq {state.get('seq')!r}, its row {snap.seq}"
    return None


def checked_snapshot(store: Store, observer: Observer | None = None, *,
                     startup: bool = True) -> Snapshot | None:
    """`verify` the store (at start-up), then the newest snapshot that decodes (None: replay
    the whole journal); see the module docstring. Failures to record the acknowledged seq
    are reported to ``observer`` from now on (``persistence_errors{operation}``)."""
    if observer is not None:
        def report(operation: str) -> None:
            observer.emit(StoreFailed(operation))

        store.on_error = report
    if startup:
        verify(store)
    for snap in store.snapshots(newest_first=True):
        why = _undecodable(snap)
        if why is None:
            return snap
        log.warning("snapshot %d (seq %d) is not usable, trying an older one or a full "
                    "replay of the journal: %s", snap.id, snap.seq, why)
        if observer is not None:
            observer.emit(StoreFailed("snapshot_decode"))
    return None
