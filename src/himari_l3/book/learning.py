"""Realised outcomes teach the learners: every closed trade the book reports (a fill that
closed some of a position, from Layer 4 or the paper executor) is fed to the engine — no
hand-posted outcome needed.

* **Kelly and conformal, per strategy x symbol**: each strategy behind the position (its
  signed share of the symbol's target when the position was built, ``ClosedTrade.strategies``)
  learns the trade's return in its own direction — the position's return for a strategy on
  the position's side, its negative for one against it — through
  ``Layer3Phase1.update_from_trade_result`` (predictions default to the key's last decision);
* **RL vs baseline**: the trade's return joins the history of the path that last set the
  symbol's target (``PortfolioBook.paths``) through ``Layer3Phase3Hybrid.record_outcome``
  with ``teach=False`` (the strategies learned above, once).

Returns are clipped to the learners' range [-1, 10] (a short can lose more than its entry).
Deterministic: the same trades in the same order teach the same, live and on replay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..phase1 import Layer3Phase1
from ..phase3 import Layer3Phase3Hybrid
from .positions import ClosedTrade

__all__ = ["teach"]


def teach(phase1: Layer3Phase1, hybrid: Layer3Phase3Hybrid | None,
          trades: Sequence[ClosedTrade],
          paths: Mapping[str, Mapping[str, str]]) -> list[dict[str, Any]]:
    """Feed ``trades`` to the learners (module docstring); ``paths``: portfolio -> symbol
    -> "rl" | "baseline". Returns what each trade taught (for the reply)."""
    out: list[dict[str, Any]] = []
    for t in trades:
        r = min(10.0, max(-1.0, t.realized_return))
        taught = {}
        for strat, share in sorted(t.strategies.items()):
            if share == 0.0:
                continue
            own = r if share > 0.0 else min(10.0, max(-1.0, -r))
            phase1.update_from_trade_result(strat, t.symbol, own)
            taught[strat] = own
        path = paths.get(t.portfolio, {}).get(t.symbol)
        if hybrid is not None and path is not None:
            hybrid.record_outcome(t.symbol, r, path == "rl", teach=False)
        out.append({"portfolio": t.portfolio, "symbol": t.symbol, "realized_return": r,
                    "strategies": taught, "path": path})
    return out
