"""Strategy weight drift against the previous allocation, with a bounded, exportable history.

A strategy's weight is its share of the gross contributions of all allocated strategies
(weights sum to 1). Drift of a strategy is the relative change of its weight,
``|w - w_prev| / w_prev``; a strategy that appears or disappears has drift 1 (100 %).
Drift above ``threshold`` (default 0.20) is flagged. The first allocation flags nothing.
"""

from __future__ import annotations

import csv
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["WEIGHT_HISTORY_COLUMNS", "WeightTracker"]

WEIGHT_HISTORY_COLUMNS = ("timestamp_ns", "timestamp_iso", "strategy_id", "weight",
                          "total_allocated_usd", "num_strategies")


class WeightTracker:
    def __init__(self, threshold: float = 0.20, history_size: int = 10_000) -> None:
        self.threshold = threshold
        self.previous_: dict[str, float] | None = None
        self.history_: deque[tuple[int, str, float, float, int]] = deque(maxlen=history_size)

    def update(
        self, weights: dict[str, float], total_usd: float, timestamp_ns: int
    ) -> tuple[list[str], float, dict[str, float]]:
        """Record ``weights``; returns (drifted strategies, max drift, drift per strategy)."""
        drift: dict[str, float] = {}
        prev = self.previous_
        if prev is not None:
            for strat in sorted(set(prev) | set(weights)):
                w, w0 = weights.get(strat, 0.0), prev.get(strat, 0.0)
                if w0 > 0.0:
                    drift[strat] = abs(w - w0) / w0
                elif w > 0.0:
                    drift[strat] = 1.0
        drifted = sorted(s for s, d in drift.items() if d > self.threshold)
        self.previous_ = dict(weights)
        n = len(weights)
        for strat in sorted(weights):
            self.history_.append((timestamp_ns, strat, weights[strat], total_usd, n))
        return drifted, max(drift.values(), default=0.0), drift

    def export_csv(self, path: str | Path) -> int:
        """Write the history as CSV (columns: WEIGHT_HISTORY_COLUMNS); returns rows written."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(WEIGHT_HISTORY_COLUMNS)
            for ts, strat, weight, total, n in self.history_:
                iso = datetime.fromtimestamp(ts / 1e9, tz=UTC).isoformat()
                w.writerow([ts, iso, strat, repr(weight), repr(total), n])
        return len(self.history_)

    def export_state(self) -> dict[str, Any]:
        previous = None if self.previous_ is None else dict(self.previous_)
        return {"previous": previous, "history": [list(r) for r in self.history_]}

    def restore_state(self, state: dict[str, Any]) -> None:
        self.previous_ = state["previous"]
        self.history_ = deque(((int(a), str(b), float(c), float(d), int(e))
                               for a, b, c, d, e in state["history"]),
                              maxlen=self.history_.maxlen)
