"""The records of a book step: the plan handed to the engine for a batch, a portfolio's
step (intents issued and dropped, targets after), and the results of fills and positions
snapshots (``book.py`` makes them; the service answers with their ``to_dict``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..portfolio.budgets import Contrib
from ..trading import TradingBrief
from .positions import ClosedTrade
from .rebalance import StepResult
from .reports import PositionDifference

__all__ = ["AllocationPlan", "BookStep", "FillsResult", "ReconcileResult", "targets_view"]


@dataclass(frozen=True, slots=True)
class AllocationPlan:
    """What the book hands the engine for one batch: the commitments, the equity to size
    against (``sizing_equity``), and what the refresh did."""

    portfolio: str
    mode: str
    now: int
    equity: float
    sizing_equity: float
    committed: Contrib
    holds: Contrib
    named: frozenset[tuple[str, str]]
    expired: int
    decayed: tuple[str, ...]
    scaled: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BookStep:
    """One portfolio's step: the intents issued (and dropped, with why), what was closed or
    decayed on the way, the repair stage if one was needed, the standing targets after."""

    portfolio: str
    request_id: int
    cause: str
    result: StepResult
    expired: int
    decayed: tuple[str, ...]
    scaled: tuple[str, ...]
    trading: TradingBrief
    standing: tuple[Contrib, dict[str, dict[str, int]]] = ({}, {})  # targets, their times

    @property
    def trading_state(self) -> str:
        """The portfolio's trading state after the step (ACTIVE, REDUCING or HALTED)."""
        return self.trading.state.value

    @property
    def targets(self) -> dict[str, Any]:
        """The standing targets after the step, per symbol (USD, strategies, times)."""
        return targets_view(*self.standing)

    def to_dict(self) -> dict[str, Any]:
        r = self.result
        return {"portfolio": self.portfolio, "cause": self.cause,
                "trading_state": self.trading.to_dict(),
                "intents": [i.to_dict() for i in r.issued],
                "dropped_intents": [d.to_dict() for d in r.dropped],
                "superseded_intents": r.superseded, "expired_intents": self.expired,
                "decayed_targets": list(self.decayed), "scaled_targets": list(self.scaled),
                "limit_repair": r.repair, "targets": self.targets}


@dataclass(frozen=True, slots=True)
class FillsResult:
    """A fills request: per fill "applied" / "duplicate" / "before_reconcile", the closed
    trades, and the step of each portfolio it touched."""

    results: tuple[str, ...]
    closed_trades: tuple[ClosedTrade, ...]
    steps: tuple[BookStep, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"results": list(self.results),
                "applied": sum(r == "applied" for r in self.results),
                "closed_trades": [t.to_dict() for t in self.closed_trades],
                "portfolios": {s.portfolio: s.to_dict() for s in self.steps}}


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    """A positions snapshot: the differences found and the step that followed."""

    differences: tuple[PositionDifference, ...]
    step: BookStep

    def to_dict(self) -> dict[str, Any]:
        return {"differences": [d.to_dict() for d in self.differences], **self.step.to_dict()}


def targets_view(targets: Contrib, updated: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Standing targets per symbol: USD, the strategies behind it, when each was set."""
    out: dict[str, Any] = {}
    for strat, row in sorted(targets.items()):
        for sym, usd in sorted(row.items()):
            t = out.setdefault(sym, {"usd": 0.0, "strategies": {}, "updated_ns": {}})
            t["usd"] += usd
            t["strategies"][strat] = usd
            t["updated_ns"][strat] = updated[strat][sym]
    return dict(sorted(out.items()))
