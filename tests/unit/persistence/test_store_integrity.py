"""The store's start-up checks (issue 13): a journal that lost acknowledged entries, has a
gap or is behind a snapshot stops start-up naming the seqs; an undecodable newest snapshot
falls back to an older one or to a full replay, with a warning and a metric."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from himari_l3.events import StoreFailed
from himari_l3.observers import RecordingObserver
from himari_l3.persistence import JournalEntry, Store
from himari_l3.persistence.__main__ import main as persistence_main
from himari_l3.persistence.ack import AckRecord
from himari_l3.persistence.recovery import (
    StoreIntegrityError,
    accept_loss,
    checked_snapshot,
    find_losses,
    verify,
)


def returns_row(seq: int) -> JournalEntry:
    """A minimal journal entry with the given seq."""
    return JournalEntry("returns", {"seq": seq, "ts_ns": seq, "config_version": "v",
                                    "request": "{}", "response": None})


def snapshot_state(seq: int) -> str:
    """A snapshot text shaped like the service's."""
    return json.dumps({"version": 1, "seq": seq, "hybrid": {"counters": seq}})


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """The path of a fresh SQLite store file."""
    return tmp_path / "l3.sqlite"


def filled(db: Path, n: int = 10, snapshots: tuple[int, ...] = ()) -> Store:
    """A store with seqs 1..n appended one per commit and snapshots at the given seqs."""
    store = Store(f"sqlite:///{db}")
    for seq in range(1, n + 1):
        store.append([returns_row(seq)])
        if seq in snapshots:
            store.save_snapshot(seq=seq, ts_ns=seq, config_version="v",
                                state=snapshot_state(seq))
    return store


def sql(db: Path, *statements: str) -> None:
    """Run statements directly on the file (what a damaged disk or an operator does)."""
    conn = sqlite3.connect(db)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def damaged(db: Path, n: int, *statements: str, snapshots: tuple[int, ...] = ()) -> Store:
    """A store filled with seqs 1..n, then changed behind its back, reopened."""
    filled(db, n, snapshots).close()
    sql(db, *statements)
    return Store(f"sqlite:///{db}")


# ------------------------------------------------------------------ the ack record
def test_every_commit_is_recorded_outside_the_database(db: Path) -> None:
    """Each append posts its seq to the sidecar <db>-ack (written by a thread; acked_seq
    waits for it), and closing the store writes the last one out."""
    store = filled(db, 3)
    assert store.acked_seq() == 3
    assert json.loads(Path(f"{db}-ack").read_text()) == {"acked_seq": 3}
    assert not Path(f"{db}-ack.tmp").exists()
    store.append([returns_row(4)])
    store.close()
    assert json.loads(Path(f"{db}-ack").read_text()) == {"acked_seq": 4}


def test_posted_seqs_are_coalesced_and_never_go_backwards(tmp_path: Path) -> None:
    """Many posts while the writer is busy end with the highest one on file."""
    rec = AckRecord(tmp_path / "x-ack")
    for seq in (*range(1, 500), 3):
        rec.post(seq)
    rec.flush()
    assert rec.read() == 499
    rec.close()
    rec.close()  # idempotent
    rec.post(600)  # a closed record starts its writer again
    rec.flush()
    assert rec.read() == 600
    rec.close()


def test_ack_record_never_goes_backwards_and_rejects_garbage(tmp_path: Path) -> None:
    """A lower seq is ignored; an unreadable record is a ValueError naming the file."""
    rec = AckRecord(tmp_path / "x-ack")
    assert rec.read() is None
    rec.write(5)
    rec.write(3)
    assert rec.read() == 5
    rec.sync()
    (tmp_path / "x-ack").write_text("{garbage")
    with pytest.raises(ValueError, match="x-ack"):
        rec.read()


def test_postgres_style_ack_lives_in_meta() -> None:
    """Without a file (PostgreSQL, in-memory SQLite) the record is in the meta table."""
    store = Store("sqlite://")
    store.append([returns_row(1), returns_row(2)])
    assert store.ack is None and store.acked_seq() == 2
    store.close()


def test_a_failed_ack_write_keeps_the_commit_and_reports(tmp_path: Path) -> None:
    """Recording the seq can fail (no such directory): the commit stands, on_error hears."""
    store = Store(f"sqlite:///{tmp_path / 'l3.sqlite'}",
                  ack_path=str(tmp_path / "missing-dir" / "ack"))
    errors: list[str] = []
    store.on_error = errors.append
    store.append([returns_row(1)])
    assert store.ack is not None
    store.ack.flush()
    assert store.max_seq() == 1 and errors == ["ack_record"]
    store.close()


# --------------------------------------------------------------------- verification
def test_a_healthy_store_verifies(db: Path) -> None:
    """No finding on an intact store (and on an empty one)."""
    store = filled(db, 20, snapshots=(7, 14))
    verify(store)
    assert find_losses(store).problems == []
    store.close()
    empty = Store(f"sqlite:///{db.with_name('empty.sqlite')}")
    verify(empty)
    empty.close()


def test_journal_behind_the_acknowledged_seq_is_refused_naming_the_seqs(db: Path) -> None:
    """Rows 8..10 vanish from the database (a cut WAL): start-up refuses, naming 8..10."""
    store = damaged(db, 10, "DELETE FROM returns WHERE seq >= 8")
    with pytest.raises(StoreIntegrityError) as info:
        verify(store)
    msg = str(info.value)
    assert "the journal ends at seq 7 but seq 10 was acknowledged" in msg
    assert "seq 8..10 missing (3 acknowledged entries)" in msg
    assert f"{db}-ack" in msg and "accept-loss" in msg
    assert info.value.losses.lost == [(8, 10)]
    store.close()


def test_a_gap_in_the_journal_is_refused(db: Path) -> None:
    """A seq missing in the middle (across the journal tables) is named."""
    store = damaged(db, 10, "DELETE FROM returns WHERE seq IN (4, 5)")
    with pytest.raises(StoreIntegrityError, match=r"gaps: seq 4\.\.5 missing \(2 entries\)"):
        verify(store)
    store.close()


def test_a_duplicate_seq_across_tables_is_damage_that_cannot_be_accepted(db: Path) -> None:
    """The same seq in two journal tables is reported and refused by accept_loss."""
    store = damaged(db, 3, "INSERT INTO config_changes (seq, ts_ns, config_version, config) "
                           "VALUES (2, 2, 'v', '{}')", "DELETE FROM returns WHERE seq = 3")
    with pytest.raises(StoreIntegrityError, match="seq 2 appears in two journal tables"):
        verify(store)
    with pytest.raises(StoreIntegrityError):
        accept_loss(store)
    store.close()


def test_a_snapshot_ahead_of_the_journal_is_refused(db: Path) -> None:
    """A snapshot at seq 9 with the journal ending at 6 (and no ack record) is a loss."""
    filled(db, 9, snapshots=(9,)).close()
    Path(f"{db}-ack").unlink()
    sql(db, "DELETE FROM returns WHERE seq > 6")
    store = Store(f"sqlite:///{db}")
    with pytest.raises(StoreIntegrityError, match=r"seq 9 is in a snapshot: seq 7\.\.9"):
        verify(store)
    store.close()


def test_quick_check_damage_is_refused(db: Path) -> None:
    """Bytes overwritten inside the database file fail PRAGMA quick_check at start-up."""
    store = filled(db, 300)
    store.checkpoint()
    store.close()
    conn = sqlite3.connect(db)
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'returns'").fetchone()[0]
    conn.close()
    data = bytearray(db.read_bytes())
    start = (root - 1) * page
    data[start:start + 8] = b"\xff" * 8  # the b-tree page header of the returns table
    db.write_bytes(bytes(data))
    store = Store(f"sqlite:///{db}")
    with pytest.raises(StoreIntegrityError, match="quick_check") as info:
        verify(store)
    assert info.value.losses.damaged
    store.close()


def test_accepting_the_loss_lets_start_up_continue_without_reusing_ids(db: Path) -> None:
    """accept_loss records 8..10 as lost: verify passes and max_seq stays at 10, so the
    next id is 11, not 8."""
    store = damaged(db, 10, "DELETE FROM returns WHERE seq >= 8")
    assert accept_loss(store) == [(8, 10)]
    verify(store)
    assert store.max_seq() == 10
    store.append([returns_row(11)])
    verify(store)  # the accepted range is a tolerated gap from now on
    store.close()


def test_persistence_cli_checks_and_accepts(db: Path, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    """python -m himari_l3.persistence check|accept-loss URL."""
    filled(db, 5).close()
    url = f"sqlite:///{db}"
    assert persistence_main(["check", url]) == 0
    sql(db, "DELETE FROM returns WHERE seq = 5")
    assert persistence_main(["check", url]) == 2
    assert "seq 5 missing" in capsys.readouterr().err
    assert persistence_main(["accept-loss", url]) == 0
    assert "accepted as lost: 5..5" in capsys.readouterr().out
    assert persistence_main(["check", url]) == 0


# -------------------------------------------------------------------- snapshots
def test_snapshots_carry_their_digest_and_are_listed_newest_first(db: Path) -> None:
    """Each snapshot's SHA-256 is recorded with it; pruning removes old digests too."""
    store = filled(db, 20, snapshots=(5, 10, 15, 20))
    snaps = list(store.snapshots())
    assert [s.seq for s in snaps] == [20, 15, 10]
    assert all(s.sha256 is not None and s.intact() for s in snaps)
    assert [s.seq for s in store.snapshots(newest_first=False)] == [10, 15, 20]
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM snapshot_digests").fetchone() == (3,)
    conn.close()
    store.close()


@pytest.mark.parametrize("damage", [
    "UPDATE state_snapshots SET state = substr(state, 1, length(state) / 2)",  # truncated
    "UPDATE state_snapshots SET state = replace(state, '20', '21')",  # valid JSON, altered
    "UPDATE state_snapshots SET state = '[1, 2]'",  # valid JSON, wrong shape (no digest)
])
def test_an_undecodable_newest_snapshot_falls_back_to_an_older_one(
        db: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    """The newest snapshot is damaged: the next older one is used, with a warning and
    persistence_errors{operation=snapshot_decode}."""
    filled(db, 20, snapshots=(10, 20)).close()
    newest = "(SELECT MAX(id) FROM state_snapshots)"
    if "'[1, 2]'" in damage:
        sql(db, f"DELETE FROM snapshot_digests WHERE id = {newest}")  # as before digests
    sql(db, damage + f" WHERE id = {newest}")
    store = Store(f"sqlite:///{db}")
    events = RecordingObserver()
    snap = checked_snapshot(store, events)
    assert snap is not None and snap.seq == 10
    assert events.events == [StoreFailed("snapshot_decode")]
    assert "snapshot" in caplog.text and "not usable" in caplog.text
    store.close()


def test_no_usable_snapshot_means_a_full_replay(db: Path) -> None:
    """Every snapshot damaged: None (replay the journal from seq 1), one event each."""
    store = damaged(db, 20, "UPDATE state_snapshots SET state = 'garbage'",
                    snapshots=(10, 20))
    events = RecordingObserver()
    assert checked_snapshot(store, events) is None
    assert events.events == [StoreFailed("snapshot_decode")] * 2
    store.close()


def test_checked_snapshot_refuses_a_lossy_store_at_start_up_only(db: Path) -> None:
    """The integrity check runs at start-up; a resync (startup=False) only picks a
    snapshot."""
    store = damaged(db, 10, "DELETE FROM returns WHERE seq = 10", snapshots=(5,))
    with pytest.raises(StoreIntegrityError):
        checked_snapshot(store, startup=True)
    snap: Any = checked_snapshot(store, startup=False)
    assert snap.seq == 5
    store.close()


def test_the_book_events_table_is_part_of_the_seq_checks(db: Path) -> None:
    """Fills and snapshots of the book share the journal's seq: a lost one is a gap."""
    store = filled(db, 4)
    for seq in (5, 6, 7):
        store.append([JournalEntry("book", {
            "seq": seq, "ts_ns": seq, "kind": "fills", "portfolio": "default",
            "config_version": "v", "request": "{}", "response": None})])
    store.append([returns_row(8)])
    verify(store)
    store.close()
    store = damaged(db, 0, "DELETE FROM book_events WHERE seq = 6")
    with pytest.raises(StoreIntegrityError, match=r"gaps: seq 6 missing \(1 entries\)"):
        verify(store)
    store.close()
