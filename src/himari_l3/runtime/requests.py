"""How each journaled request changes the engine — the one definition used both live
(`runtime.SizingService`) and on replay (`restore.Restorer`), so the two cannot drift apart.

Every function takes the engine and the request exactly as it was journaled (plain JSON) and
returns what the caller answers with. The clock is pinned to the request's journaled
timestamp by the caller; a decision's recorded RL answers are served by the caller through
the model guard's replay tape.
"""

from __future__ import annotations

from typing import Any

from ..book import (
    DEFAULT_PORTFOLIO,
    BookAllocation,
    BookStep,
    Fill,
    FillsResult,
    Layer3Book,
    PositionsSnapshot,
    ReconcileResult,
)
from ..book.desk import DeskStep, ExecutionDesk, settle
from ..contracts import (
    CascadeIndicators,
    PositionSizingDecision,
    TacticalSignal,
)
from ..fills import SimFill
from ..phase3 import Layer3Phase3Hybrid

__all__ = [
    "allocate_request",
    "apply_allocate",
    "apply_book_entry",
    "apply_fills",
    "apply_outcome",
    "apply_paper",
    "apply_prices",
    "apply_reconcile",
    "apply_returns",
    "apply_size",
    "apply_trading_state",
    "size_request",
]


def apply_size(hybrid: Layer3Phase3Hybrid, signal: TacticalSignal,
               cascade: CascadeIndicators, price: float, current_position_usd: float | None,
               portfolio_value: float | None) -> PositionSizingDecision:
    """Phase 1 sizing of one signal (advances the symbol's regime state)."""
    return hybrid.phase2.phase1.calculate_position(
        signal, cascade, price, current_position_usd=current_position_usd,
        portfolio_value=portfolio_value)


def size_request(req: dict[str, Any]) -> tuple[TacticalSignal, CascadeIndicators, float,
                                               float | None, float | None]:
    """A journaled ``size`` request as `apply_size`'s arguments."""
    return (TacticalSignal.from_dict(req["signal"]), CascadeIndicators.from_dict(req["cascade"]),
            req["price"], req["current_position_usd"], req["portfolio_value"])


async def apply_allocate(book: Layer3Book, signals: list[TacticalSignal],
                         cascade: dict[str, CascadeIndicators], prices: dict[str, float],
                         portfolio: str, mode: str, decision_id: int) -> BookAllocation:
    """Phase 3 allocation of a batch through the portfolio's book (targets, intents)."""
    return await book.allocate_async(signals, cascade, prices, portfolio=portfolio,
                                     mode=mode, decision_id=decision_id)


def allocate_request(req: dict[str, Any]) -> tuple[list[TacticalSignal],
                                                   dict[str, CascadeIndicators],
                                                   dict[str, float], str, str]:
    """A journaled ``allocate`` request as `apply_allocate`'s arguments (a request
    journaled before the book existed is an incremental one for the default portfolio)."""
    return ([TacticalSignal.from_dict(s) for s in req["signals"]],
            {k: CascadeIndicators.from_dict(c) for k, c in req["cascade"].items()},
            req["prices"], req.get("portfolio", DEFAULT_PORTFOLIO),
            req.get("mode", "incremental"))


def apply_fills(book: Layer3Book, req: dict[str, Any], request_id: int) -> FillsResult:
    """Fills of the book's intents (checked as a whole before any is applied)."""
    return book.apply_fills([Fill.from_dict(f, i) for i, f in enumerate(req["fills"])],
                            request_id)


def apply_reconcile(book: Layer3Book, req: dict[str, Any], request_id: int) -> ReconcileResult:
    """An authoritative positions snapshot of one portfolio."""
    return book.book.reconcile(req["portfolio"], PositionsSnapshot.from_dict(req), request_id)


def apply_trading_state(book: Layer3Book, req: dict[str, Any], request_id: int) -> BookStep:
    """An operator command: a portfolio's (or one symbol's) trading state."""
    return book.set_trading_state(req["state"], req["reason"], symbol=req.get("symbol"),
                                  portfolio=req["portfolio"], request_id=request_id)


def apply_prices(book: Layer3Book, req: dict[str, Any], request_id: int) -> BookStep:
    """New prices for a portfolio: marked, the book refreshed and re-planned."""
    return book.mark(req["prices"], req["portfolio"], request_id)


def apply_paper(desk: ExecutionDesk, req: dict[str, Any], request_id: int, ts_ns: int,
                *, replay: bool) -> DeskStep:
    """One price observation worked by the paper executor (``req``: ``prices``,
    ``volumes``; on replay also the ``fills`` it made the first time, applied instead of
    simulated)."""
    recorded = ([SimFill.from_dict(f) for f in req["fills"]] if replay else None)
    return desk.observe(req["prices"], ts_ns, request_id, volumes=req.get("volumes"),
                        recorded=recorded)


def apply_book_entry(book: Layer3Book, desk: ExecutionDesk | None, kind: str,
                     req: dict[str, Any], request_id: int, ts_ns: int) -> Any:
    """A journaled ``book`` entry on replay, by kind (fills, reconcile, trading_state,
    prices, paper)."""
    if kind == "fills":
        return apply_fills(book, req, request_id)
    if kind == "reconcile":
        return apply_reconcile(book, req, request_id)
    if kind == "trading_state":
        return apply_trading_state(book, req, request_id)
    if kind == "prices":
        return apply_prices(book, req, request_id)
    if kind == "paper":
        if desk is None:  # paper trading switched off since: the fills still happened
            return settle(book.book, book.apply_fills,
                          [SimFill.from_dict(f) for f in req["fills"]], req["cancelled"],
                          request_id)
        return apply_paper(desk, req, request_id, ts_ns, replay=True)
    raise ValueError(f"unknown book entry kind {kind!r} (seq {request_id})")


def apply_outcome(hybrid: Layer3Phase3Hybrid, req: dict[str, Any]) -> dict[str, Any]:
    """A strategy's trade result (Phase 1 learners) or a path's result (RL vs baseline)."""
    if req["strategy_id"] is not None:
        learned = hybrid.phase2.phase1.update_from_trade_result(
            req["strategy_id"], req["symbol"], req["realized_return"],
            predicted_return=req["predicted_return"],
            predicted_volatility=req["predicted_volatility"])
        return {"kind": "trade", "learned": learned}
    hybrid.record_outcome(req["symbol"], req["realized_return"], bool(req["used_rl"]))
    return {"kind": "path", "used_rl": bool(req["used_rl"]),
            "performance": hybrid.get_performance_comparison()}


def apply_returns(hybrid: Layer3Phase3Hybrid, req: dict[str, Any]) -> dict[str, Any]:
    """One row of returns into the correlation monitor."""
    return hybrid.phase2.update_correlations(req["returns"], req["timestamp_ns"])
