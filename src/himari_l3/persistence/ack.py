"""The last acknowledged journal ``seq``, kept outside the SQLite database.

A journal row is committed, then the request is acknowledged. If the database later loses
committed rows — the WAL cut or deleted after a crash, an old copy of the file restored —
the journal still looks consistent, and the lost sequence numbers would be handed out
again. A record of the highest committed ``seq`` kept in a separate file (next to the
database: ``<file>-ack``) lets start-up see that the journal ends below it.

How it is written: a temporary file, renamed over the record (atomic: a reader sees the old
or the new value, never a torn one). When, and the trade-off:

* after every commit, by a writer thread: `post` hands it the new seq and returns at once
  (commits coming faster than the writer are coalesced: it always writes the newest).
  Written on the committing thread instead — the service's event loop — the rename cost
  every request ~0.1–0.2 ms of CPU and, with the disk busy, +2 to +5 ms of wall time per
  commit here; posted, +0.1–0.15 ms (``bench/bench_ack_record.py``). The service keeps WAL
  checkpoints off the request path for the same reason. The price: the record trails the
  acknowledgements by the write in flight (well under a millisecond on an idle disk), so a
  crash inside that window followed by the loss of exactly those newest entries would go
  unseen; a loss reaching further back is seen;
* no fsync per write: the record survives a crash or SIGKILL of the process (the page cache
  outlives it). `sync` fsyncs file and directory; the store calls it after every snapshot,
  so after a power cut the record lags the journal by at most one snapshot interval;
* it never runs ahead of the journal (it is posted after the commit), so a stale record can
  only miss a loss, never report a false one, and it never goes backwards in a process.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

__all__ = ["AckRecord"]

log = logging.getLogger(__name__)


class AckRecord:
    """``{"acked_seq": N}`` in ``path``; see the module docstring. ``on_error`` is called
    (from the writer thread) when a posted write fails."""

    def __init__(self, path: str | os.PathLike[str],
                 on_error: Callable[[], None] | None = None) -> None:
        self.path = Path(path)
        self.on_error = on_error
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self._lock = threading.Lock()  # one write at a time
        self._cond = threading.Condition()  # guards _posted / _written / _stop
        self._held = 0  # the highest value written by this process
        self._posted = 0
        self._written = 0
        self._stop = False
        self._thread: threading.Thread | None = None

    def read(self) -> int | None:
        """The recorded seq; None when there is no record. ValueError if it is unreadable."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
            seq = data["acked_seq"]
        except (ValueError, TypeError, KeyError):
            raise ValueError(f"{self.path}: not an acknowledged-seq record "
                             f"({text[:80]!r})") from None
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise ValueError(f"{self.path}: acked_seq was {seq!r}, expected an int >= 0")
        return seq

    def write(self, seq: int) -> None:
        """Record ``seq`` now, if above the value held (temporary file, then rename)."""
        with self._lock:
            if seq <= self._held:
                return
            fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, json.dumps({"acked_seq": seq}).encode())
            finally:
                os.close(fd)
            os.replace(self._tmp, self.path)
            self._held = seq

    def post(self, seq: int) -> None:
        """Have the writer thread record ``seq`` soon; returns at once."""
        with self._cond:
            if seq <= self._posted:
                return
            self._posted = seq
            if self._thread is None:
                self._stop = False
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name=f"ack-record-{self.path.name}")
                self._thread.start()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._posted <= self._written and not self._stop:
                    self._cond.wait()
                if self._stop and self._posted <= self._written:
                    return
                seq = self._posted
            try:
                self.write(seq)
            except OSError:
                log.exception("recording acknowledged seq %d in %s failed", seq, self.path)
                if self.on_error is not None:
                    self.on_error()
            with self._cond:
                self._written = max(self._written, seq)  # a failure is not retried
                self._cond.notify_all()

    def flush(self, timeout_sec: float = 10.0) -> None:
        """Wait (bounded) until every posted seq has been written (or failed)."""
        with self._cond:
            self._cond.wait_for(lambda: self._written >= self._posted, timeout_sec)

    def close(self, timeout_sec: float = 10.0) -> None:
        """Flush, then stop the writer thread (idempotent)."""
        with self._cond:
            thread, self._thread = self._thread, None
            self._stop = True
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout_sec)

    def sync(self) -> None:
        """Make the record durable (fsync the file and its directory). Not under the write
        lock: a write racing with it is made durable by the next sync."""
        if not self._held:
            return
        for path in (self.path, self.path.parent):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
