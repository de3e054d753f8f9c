"""runtime/heap.py: the long-running process's collector settings (checked in a child
process: they are process-wide)."""

from __future__ import annotations

import json
import subprocess
import sys

from himari_l3.runtime.heap import GEN0_THRESHOLD


def test_settle_heap_freezes_and_raises_the_young_threshold() -> None:
    """After settle_heap the start-up objects are frozen and gen-0 waits GEN0_THRESHOLD."""
    code = ("import gc, json; from himari_l3.runtime.heap import settle_heap; "
            "before = gc.get_threshold(); settle_heap(); "
            "print(json.dumps([before, gc.get_threshold(), gc.get_freeze_count()]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    before, after, frozen = json.loads(out)
    assert after == [GEN0_THRESHOLD, before[1], before[2]]
    assert frozen > 1000  # the imported modules' objects, at least
