"""Garbage-collector settings for a long-running Layer 3 process (``himari-l3 serve`` and
``himari-l3 run``), applied once start-up is done. Process-wide, so never by the library
or by tests: a library user's process keeps its own settings.

* ``gc.freeze()``: everything alive after start-up (imported modules, restored state)
  moves to the permanent generation, so full collections scan only what requests create
  (it took 35–40 ms gen-2 pauses every few seconds out of the service's tail).
* A first-generation threshold of ``GEN0_THRESHOLD`` instead of 700: with metrics on, the
  deferred metric writes keep each decision alive until the flusher applies them, so
  young collections ran every few decisions and each walked hundreds of live objects —
  the p99 of a Phase 1 decision with metrics on was 42 µs against 12 µs with metrics
  off, 20 µs with this threshold (``bench/bench_phase1.py``, docs/performance.md).
  Garbage in reference cycles waits a little longer (at most this many net allocations of
  container objects, a few MB); everything else is still freed at once by reference
  counting.
"""

from __future__ import annotations

import gc

__all__ = ["GEN0_THRESHOLD", "settle_heap"]

GEN0_THRESHOLD = 20_000


def settle_heap() -> None:
    """Collect, freeze what is alive, and raise the first generation's threshold."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
