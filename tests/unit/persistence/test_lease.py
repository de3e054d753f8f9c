"""The portfolio lease: one owner, takeover after a silent TTL, and the fence in the journal's
own transaction (a paused owner that lost the lease can never commit again)."""

from __future__ import annotations

from pathlib import Path

import pytest

from himari_l3 import ManualClock
from himari_l3.persistence import JournalEntry, Store
from himari_l3.persistence.lease import Lease, LeaseLost


def _entry(seq: int) -> JournalEntry:
    return JournalEntry("returns", {"seq": seq, "ts_ns": seq, "config_version": "v",
                                    "request": "{}"})


def _pair(tmp_path: Path) -> tuple[str, ManualClock, Lease, Lease]:
    url = f"sqlite:///{tmp_path / 'l3.sqlite'}"
    clock = ManualClock()
    return url, clock, Lease(url, "p1", "a", 10.0, clock), Lease(url, "p1", "b", 10.0, clock)


def test_first_comer_owns_and_a_standby_waits_while_it_renews(tmp_path: Path) -> None:
    """A free portfolio is taken at once; a renewing owner is never taken over."""
    _, clock, a, b = _pair(tmp_path)
    assert a.try_acquire() and a.epoch == 1
    for _ in range(10):
        assert not b.try_acquire()
        clock.advance(4.0)
        assert a.renew()
    assert not b.try_acquire() and b.epoch is None


def test_standby_takes_over_after_a_silent_ttl_and_fences_the_old_owner(
        tmp_path: Path) -> None:
    """Owner silent for a TTL: the standby takes epoch 2; the old owner cannot commit."""
    url, clock, a, b = _pair(tmp_path)
    store_a, store_b = Store(url), Store(url)
    store_a.fence, store_b.fence = a.fence, b.fence
    assert a.try_acquire()
    store_a.append([_entry(1)])
    assert not b.try_acquire()
    clock.advance(9.9)
    assert not b.try_acquire()  # not yet a full TTL of silence
    clock.advance(0.2)
    assert b.try_acquire() and b.epoch == 2
    # The old owner wakes up from its pause and tries to write: refused, nothing committed.
    with pytest.raises(LeaseLost):
        store_a.append([_entry(2)])
    assert not a.renew() and a.expired()
    store_b.append([_entry(2)])
    assert [r["seq"] for r in store_b.returns()] == [1, 2]
    for s in (store_a, store_b):
        s.close()


def test_release_hands_over_at_once(tmp_path: Path) -> None:
    """A graceful release lets the standby take over on its next poll."""
    _, _, a, b = _pair(tmp_path)
    assert a.try_acquire()
    assert not b.try_acquire()
    a.release()
    assert b.try_acquire() and b.epoch == 2
    assert a.epoch is None and not a.renew()


def test_two_standbys_race_and_exactly_one_wins(tmp_path: Path) -> None:
    """The takeover is a compare-and-set on the epoch and beat it saw."""
    url, clock, a, b = _pair(tmp_path)
    c = Lease(url, "p1", "c", 10.0, clock)
    assert a.try_acquire()
    assert not b.try_acquire() and not c.try_acquire()
    clock.advance(11.0)
    won = [b.try_acquire(), c.try_acquire()]
    assert won.count(True) == 1


def test_owner_that_cannot_renew_expires_itself(tmp_path: Path) -> None:
    """An owner whose renewals have not succeeded for a TTL stops acting as owner."""
    _, clock, a, _ = _pair(tmp_path)
    assert a.try_acquire() and not a.expired()
    clock.advance(9.0)
    assert not a.expired()
    clock.advance(1.0)
    assert a.expired()


def test_portfolios_are_independent(tmp_path: Path) -> None:
    """Each portfolio has its own lease."""
    url, clock, a, _ = _pair(tmp_path)
    other = Lease(url, "p2", "b", 10.0, clock)
    assert a.try_acquire() and other.try_acquire()
    assert (a.epoch, other.epoch) == (1, 1)
