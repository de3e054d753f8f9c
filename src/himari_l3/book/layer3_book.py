"""`Layer3Book`: the book and its sizing engine as one object — the library's way to run
allocations through the book (the service drives the same object)::

    from himari_l3.book import Layer3Book

    lb = Layer3Book(Layer3Phase3Hybrid(portfolio_value=100_000, enable_rl=False))
    out = lb.allocate(signals, cascade, prices)            # targets, intents
    lb.apply_fills([{"symbol": "BTC-USD", "side": "buy", "quantity": 0.1,
                     "price": 50_000.0, "client_order_id": out.step.result.issued[0]
                     .client_order_id}])
    lb.positions()                                          # equity, exposures, PnL

An allocation: the book works out the commitments and the equity to size against, the
engine sizes the batch inside every limit beside the commitments, the book takes the new
standing targets and issues the intents (``book.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._clock import Clock
from .._exceptions import InvalidBookRequestException
from ..config.schema import Layer3Config
from ..contracts import CascadeIndicators, EnsembleAllocation
from ..observers import Observer
from ..phase2 import Layer3Phase2Portfolio
from ..phase3 import Layer3Phase3Hybrid
from ..trading import TradingState
from .book import DEFAULT_PORTFOLIO, AllocationPlan, Book, BookStep, FillsResult, ReconcileResult
from .fills import Fill, PositionsSnapshot
from .learning import teach
from .markets import Markets

__all__ = ["BookAllocation", "Layer3Book"]

Engine = Layer3Phase3Hybrid | Layer3Phase2Portfolio


@dataclass(frozen=True, slots=True)
class BookAllocation:
    """An allocation through the book: the engine's allocation (the batch, inside every
    limit beside the standing targets) and the book's step (targets, intents)."""

    allocation: EnsembleAllocation
    step: BookStep

    def to_dict(self) -> dict[str, Any]:
        return {**self.allocation.to_dict(), **self.step.to_dict()}


def _fill(raw: Fill | Mapping[str, Any], index: int) -> Fill:
    if isinstance(raw, Fill):
        return raw
    if not isinstance(raw, Mapping):
        raise InvalidBookRequestException(f"fills[{index}]", raw, "a fill object",
                                          path=("fills", index))
    missing = [k for k in ("symbol", "side", "quantity", "price", "client_order_id")
               if k not in raw]
    if missing:
        raise InvalidBookRequestException(f"fills[{index}].{missing[0]}", None, "present",
                                          path=("fills", index, missing[0]))
    return Fill.from_dict(raw, index)


class Layer3Book:
    """The book (``book``) driven by a sizing engine (``engine``: Phase 3, or Phase 2).

    Without arguments: a Phase 3 engine (RL off, no metrics) and a book from its config.
    ``markets``: the instrument rules (``himari_l3.config.markets.load_markets`` reads the
    markets file); ``observer`` / ``clock`` default to the engine's.
    """

    def __init__(self, engine: Engine | None = None, *, book: Book | None = None,
                 config: Layer3Config | None = None, markets: Markets | None = None,
                 observer: Observer | None = None, clock: Clock | None = None,
                 learn_from_fills: bool = True) -> None:
        self.engine: Engine = engine or Layer3Phase3Hybrid(
            config=config, enable_metrics=False, observer=observer, clock=clock)
        cfg = config or (self.engine.config if isinstance(self.engine, Layer3Phase3Hybrid)
                         else Layer3Config(portfolio=self.engine.config))
        self.book = book or Book(cfg, markets=markets, observer=observer or self.engine.observer,
                                 clock=clock or self.engine.clock)
        # Closed trades teach the learners (False: the caller feeds outcomes its own way).
        self.learn_from_fills = learn_from_fills

    @property
    def phase2(self) -> Layer3Phase2Portfolio:
        e = self.engine
        return e.phase2 if isinstance(e, Layer3Phase3Hybrid) else e

    # ---------------------------------------------------------------- allocations
    def _begin(self, signals: Sequence[Any], prices: Mapping[str, float], portfolio: str,
               mode: str, price_times: Mapping[str, int] | None = None,
               ) -> tuple[AllocationPlan, float]:
        """The book's plan, with the engine set to size against the portfolio's equity and
        hold its standing targets; returns the engine's equity to put back afterwards (a
        ``POST /v1/size`` or a Phase 2 caller without the book sees the configured one)."""
        plan = self.book.begin_allocation(portfolio, signals, prices, mode,
                                          price_times=price_times)
        configured = self.phase2.portfolio_value
        self.phase2.set_portfolio_value(plan.sizing_equity)
        self.phase2.hold(plan.holds)
        return plan, configured

    def allocate(self, signals: Sequence[Any],
                 cascade_indicators: Mapping[str, CascadeIndicators] | CascadeIndicators,
                 current_prices: Mapping[str, float], *, portfolio: str = DEFAULT_PORTFOLIO,
                 mode: str = "incremental", decision_id: int | None = None,
                 price_times: Mapping[str, int] | None = None) -> BookAllocation:
        """Allocate a batch through the book (blocking). ``mode``: "incremental" (symbols
        not in the batch keep their targets) or "full" (they go to 0); ``price_times``:
        when each price was observed, if known (older than ``trading_state.stale_after_sec``
        → the symbol is REDUCING)."""
        plan, configured = self._begin(signals, current_prices, portfolio, mode, price_times)
        args = (list(signals), cascade_indicators, dict(current_prices))
        e = self.engine
        try:
            alloc = (e.process_signals(*args, committed=plan.committed)  # type: ignore[arg-type]
                     if isinstance(e, Layer3Phase3Hybrid)
                     else e.process_multi_strategy_signals(*args, committed=plan.committed))  # type: ignore[arg-type]
        finally:
            self.phase2.set_portfolio_value(configured)
        return BookAllocation(alloc, self.book.finish_allocation(plan, alloc, decision_id))

    async def allocate_async(self, signals: Sequence[Any],
                             cascade_indicators: Mapping[str, CascadeIndicators]
                             | CascadeIndicators,
                             current_prices: Mapping[str, float], *,
                             portfolio: str = DEFAULT_PORTFOLIO, mode: str = "incremental",
                             decision_id: int | None = None,
                             price_times: Mapping[str, int] | None = None) -> BookAllocation:
        """Async twin of `allocate` (the RL model is asked without blocking)."""
        e = self.engine
        if not isinstance(e, Layer3Phase3Hybrid):
            return self.allocate(signals, cascade_indicators, current_prices,
                                 portfolio=portfolio, mode=mode, decision_id=decision_id,
                                 price_times=price_times)
        plan, configured = self._begin(signals, current_prices, portfolio, mode, price_times)
        try:
            alloc = await e.process_signals_async(list(signals), cascade_indicators,  # type: ignore[arg-type]
                                                  dict(current_prices), committed=plan.committed)
        finally:
            self.phase2.set_portfolio_value(configured)
        return BookAllocation(alloc, self.book.finish_allocation(plan, alloc, decision_id))

    # ---------------------------------------------------------------- reports
    def apply_fills(self, fills: Sequence[Fill | Mapping[str, Any]],
                    request_id: int | None = None) -> FillsResult:
        """Fills of the book's intents (``Book.apply_fills``; plain dicts are accepted);
        the trades they closed teach the engine's learners (``book/learning.py``)."""
        result = self.book.apply_fills([_fill(f, i) for i, f in enumerate(fills)],
                                       request_id)
        if result.closed_trades and self.learn_from_fills:
            e = self.engine
            paths = {n: pb.paths for n, pb in self.book.portfolios.items()}
            teach(self.phase2.phase1, e if isinstance(e, Layer3Phase3Hybrid) else None,
                  result.closed_trades, paths)
        return result

    def set_trading_state(self, state: TradingState | str, reason: str, *,
                          symbol: str | None = None, portfolio: str = DEFAULT_PORTFOLIO,
                          request_id: int | None = None) -> BookStep:
        """An operator command (``Book.set_trading_state``): halt, reduce-only or resume,
        for the portfolio or one symbol."""
        return self.book.set_trading_state(portfolio, state, reason, symbol, request_id)

    def trading_state(self, portfolio: str = DEFAULT_PORTFOLIO) -> dict[str, Any]:
        """The portfolio's trading state (``Book.trading_status``)."""
        return self.book.trading_status(portfolio)

    def reconcile(self, portfolio: str, snapshot: PositionsSnapshot | Mapping[str, Any],
                  request_id: int | None = None) -> ReconcileResult:
        """An authoritative positions snapshot (``Book.reconcile``)."""
        snap = (snapshot if isinstance(snapshot, PositionsSnapshot)
                else PositionsSnapshot.from_dict(snapshot))
        return self.book.reconcile(portfolio, snap, request_id)

    def mark(self, prices: Mapping[str, float], portfolio: str = DEFAULT_PORTFOLIO,
             request_id: int | None = None) -> BookStep:
        return self.book.mark(portfolio, prices, request_id)

    def positions(self, portfolio: str = DEFAULT_PORTFOLIO) -> dict[str, Any]:
        return self.book.positions(portfolio)

    def intents(self, portfolio: str = DEFAULT_PORTFOLIO) -> list[dict[str, Any]]:
        return self.book.intents(portfolio)

    # ---------------------------------------------------------------- config and state
    def apply_config(self, config: Layer3Config,
                     request_id: int | None = None) -> list[BookStep]:
        """Hot reload of the engine and the book (see `Book.apply_config`)."""
        e = self.engine
        if isinstance(e, Layer3Phase3Hybrid):
            e.apply_config(config)
        else:
            e.apply_config(config.portfolio, config.sizing)
        return self.book.apply_config(config, request_id)

    def export_state(self) -> dict[str, Any]:
        return {"engine": self.engine.export_state(), "book": self.book.export_state()}

    def restore_state(self, state: dict[str, Any]) -> None:
        self.engine.restore_state(state["engine"])
        self.book.restore_state(state["book"])
