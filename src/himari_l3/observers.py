"""Observer hooks: how metrics, audit logs and tests watch decisions without the core
importing any of them. Every hook is a no-op here; adapters override what they need."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .contracts import EnsembleAllocation, PositionSizingDecision


class Observer:
    """Base observer: override the hooks you care about. Hooks must not raise."""

    def on_sizing(self, decision: PositionSizingDecision) -> None:
        """A Phase 1 decision was made."""

    def on_invalid_input(self, kind: str, field: str) -> None:
        """An input was rejected (``kind``: signal, cascade, price, outcome, returns)."""

    def on_outcome(self, strategy_id: str, symbol: str, realized_return: float,
                   learned: dict[str, Any]) -> None:
        """A realised trade outcome updated the learners (``learned``: coverage, alpha...)."""

    def on_regime(self, symbol: str, state: dict[str, Any]) -> None:
        """A symbol's regime state was updated."""

    def on_allocation(self, phase: str, allocation: EnsembleAllocation,
                      latency_sec: float) -> None:
        """A Phase 2 or Phase 3 allocation was produced."""

    def on_correlation(self, stats: dict[str, Any]) -> None:
        """The correlation monitor was updated."""

    def on_event(self, name: str, labels: dict[str, str], value: float = 1.0) -> None:
        """A named, countable event (drift, RL request outcome, fallback...)."""


NULL_OBSERVER = Observer()
