"""Restore = latest snapshot + the journal entries after it, re-applied in ``seq`` order.

`Restorer` is owned by the service (`runtime.SizingService`). It brings the engine to the
state after the last committed journal entry and returns what it found (`RestoreResult`);
the service adopts that result itself. Replay applies each entry with the same functions the
service uses live (``requests.py``), with the clock pinned to the entry's journaled timestamp,
a decision's recorded RL answers served back through the model guard's replay tape (a remote
model cannot be asked again), and the engine's events muted (they were counted when they
happened).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._exceptions import ConfigError
from ..book import Layer3Book
from ..book.desk import ExecutionDesk
from ..config.schema import Layer3Config, parse_config
from ..contracts import EnsembleAllocation, RLPrediction
from ..observers import GatedObserver
from ..persistence import JournalEntry, Store
from ..persistence.recovery import checked_snapshot
from ..phase3 import Layer3Phase3Hybrid
from ..rl_port import RLFailure, RLResult
from .clock import PinnedClock
from .requests import (
    allocate_request,
    apply_allocate,
    apply_book_entry,
    apply_outcome,
    apply_returns,
    apply_size,
    size_request,
)

__all__ = ["RestoreResult", "Restorer", "rl_results_from_json"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """What a restore found: the journal's last ``seq``, the snapshot it started from (None:
    a full replay), how many entries it replayed, and the config in force after them."""

    seq: int
    snapshot_seq: int | None
    replayed: int
    config: Layer3Config
    seconds: float

    def info(self) -> dict[str, Any]:
        """For ``/v1/state`` and the log."""
        return {"snapshot_seq": self.snapshot_seq, "replayed": self.replayed,
                "journal_seq": self.seq, "seconds": round(self.seconds, 4)}


def rl_results_from_json(text: str) -> list[RLResult]:
    """A decision's journaled RL answers (``rl_results`` column) as results again."""
    out: list[RLResult] = []
    for d in json.loads(text):
        if "failure" in d:
            out.append(RLFailure(**d["failure"]))
        else:
            out.append(RLPrediction.from_dict(d["prediction"]))
    return out


class Restorer:
    """Replays the store into the engine (see the module docstring)."""

    def __init__(self, store: Store, hybrid: Layer3Phase3Hybrid, clock: PinnedClock,
                 gate: GatedObserver, version_of: Callable[[Layer3Config], str],
                 book: Layer3Book, desk: ExecutionDesk | None = None) -> None:
        self.store = store
        self.hybrid = hybrid
        self.book = book
        self.desk = desk
        self.clock = clock
        self.gate = gate
        self.version_of = version_of

    async def restore(self, current: Layer3Config, *, startup: bool) -> RestoreResult:
        """Bring the engine to the state after the last committed journal entry, starting
        from ``current`` (the config in force). Without a snapshot a resync (``startup``
        False) refuses: it cannot start from a clean engine that has already moved."""
        t0 = time.perf_counter()
        hybrid = self.hybrid
        snap = await asyncio.to_thread(checked_snapshot, self.store, self.gate,
                                       startup=startup)
        base_seq = 0
        applied = current
        with self.gate.muting():
            if snap is not None:
                state = json.loads(snap.state)
                snap_cfg = self._snapshot_config(state)
                if snap_cfg is not None and self.version_of(snap_cfg) != self.version_of(
                        applied):
                    self.book.apply_config(snap_cfg)
                    applied = snap_cfg
                hybrid.restore_state(state["hybrid"])
                # A snapshot from before the book: an empty book (the journal after it
                # builds the book up from there).
                if "book" in state:
                    self.book.book.restore_state(state["book"])
                if self.desk is not None and state.get("desk") is not None:
                    self.desk.restore_state(state["desk"])
                last = state.get("last_allocation")
                # Phase 2's export leaves out the last allocation outcomes are credited to.
                hybrid.phase2.restore_last_allocation(
                    EnsembleAllocation.from_dict(last) if last else None)
                base_seq = snap.seq
            elif not startup:
                raise RuntimeError("no snapshot to resync from")
            entries = await asyncio.to_thread(self.store.journal_after, base_seq)
            for e in entries:
                applied = await self._apply(e, applied)
        seq = max(base_seq, entries[-1].seq if entries else 0,
                  await asyncio.to_thread(self.store.max_seq))
        return RestoreResult(seq, snap.seq if snap is not None else None, len(entries),
                             applied, time.perf_counter() - t0)

    async def _apply(self, e: JournalEntry, cfg: Layer3Config) -> Layer3Config:
        new = await self._apply_entry(e, cfg)
        if self.desk is not None:  # the executor follows the book, as it did live
            with self.clock.pinned(int(e.row["ts_ns"])):
                self.desk.sync()
        return new

    async def _apply_entry(self, e: JournalEntry, cfg: Layer3Config) -> Layer3Config:
        hybrid, row = self.hybrid, e.row
        ts = int(row["ts_ns"])
        if e.table == "config":
            new = parse_config(Layer3Config, json.loads(row["config"]))
            with self.clock.pinned(ts):
                self.book.apply_config(new, e.seq)
            return new
        req = json.loads(row["request"])
        with self.clock.pinned(ts):
            if e.table == "outcome":
                apply_outcome(hybrid, req)
            elif e.table == "returns":
                apply_returns(hybrid, req)
            elif e.table == "book":
                apply_book_entry(self.book, self.desk, row["kind"], req, e.seq, ts)
            elif row["kind"] == "size":
                apply_size(hybrid, *size_request(req))
            elif hybrid.rl_client is not None:
                # Never ask the model during a replay: serve what was recorded. A row from
                # before answers were always recorded (None) means the batch met an open
                # breaker.
                recorded = row.get("rl_results")
                with hybrid.rl_client.replaying(
                        None if recorded is None else rl_results_from_json(recorded)):
                    await apply_allocate(self.book, *allocate_request(req), e.seq)
            else:
                await apply_allocate(self.book, *allocate_request(req), e.seq)
        return cfg

    @staticmethod
    def _snapshot_config(state: dict[str, Any]) -> Layer3Config | None:
        try:
            return parse_config(Layer3Config, state.get("config"))
        except ConfigError as err:  # written by another version of the schema
            log.warning("snapshot config not usable (%s): replaying under the current one",
                        err)
            return None
