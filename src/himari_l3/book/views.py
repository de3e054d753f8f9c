"""What ``GET /v1/positions`` shows of a portfolio's book (plain JSON, finite numbers).

Exposures are in USD at the marks and in percent of equity (``_pct``, like the allocation's
``utilization_pct``). When equity is not positive (a book that lost more than its capital)
the percentages are taken of the capital instead, so that they stay finite; ``equity``
itself says so.
"""

from __future__ import annotations

from typing import Any

from ..events import BookMarked
from .portfolio import PortfolioBook

__all__ = ["book_marks", "positions_view"]


def positions_view(pb: PortfolioBook, capital: float) -> dict[str, Any]:
    """The portfolio's positions and totals (see the module docstring)."""
    equity = pb.equity()
    base = equity if equity > 0.0 else max(pb.capital, capital)
    positions: dict[str, Any] = {}
    gross = net = unrealized = realized = fees = 0.0
    for sym, pos in sorted(pb.positions.items()):
        mark = pb.marks[sym]
        value = pos.quantity * mark
        upnl = pos.unrealized_pnl(mark)
        gross += abs(value)
        net += value
        unrealized += upnl
        realized += pos.realized_pnl
        fees += pos.fees_paid
        positions[sym] = {
            "quantity": pos.quantity, "avg_price": pos.avg_price, "mark_price": mark,
            "market_value": value, "unrealized_pnl": upnl, "realized_pnl": pos.realized_pnl,
            "fees_paid": pos.fees_paid, "exposure_pct": 100.0 * value / base,
            "target_usd": pb.target_usd(sym),
        }
    projected = pb.projected()
    p_gross = sum(abs(x) for x in projected.values())
    return {
        "portfolio": pb.name, "trading_state": pb.trading_state.value,
        "positions": positions, "cash": pb.cash, "capital": pb.capital, "equity": equity,
        "gross_exposure_usd": gross, "net_exposure_usd": net,
        "gross_exposure_pct": 100.0 * gross / base, "net_exposure_pct": 100.0 * net / base,
        "leverage": gross / base,
        "projected_gross_exposure_pct": 100.0 * p_gross / base,
        "projected_net_exposure_pct": 100.0 * sum(projected.values()) / base,
        "realized_pnl": realized, "unrealized_pnl": unrealized, "fees_paid": fees,
        "open_intents": sum(len(v) for v in pb.live.values()),
        "last_reconcile_ns": pb.last_reconcile_ns if pb.last_reconcile_ns >= 0 else None,
    }


def book_marks(pb: PortfolioBook, capital: float) -> BookMarked:
    """The numbers the metrics follow, in one pass (the same as `positions_view`'s)."""
    equity = pb.cash
    gross = net = unrealized = realized = fees = 0.0
    for sym, pos in pb.positions.items():
        mark = pb.marks[sym]
        value = pos.quantity * mark
        equity += value
        gross += abs(value)
        net += value
        unrealized += pos.unrealized_pnl(mark)
        realized += pos.realized_pnl
        fees += pos.fees_paid
    base = equity if equity > 0.0 else max(pb.capital, capital)
    return BookMarked(pb.name, equity, gross / base, net / base, realized, unrealized, fees,
                      sum(len(v) for v in pb.live.values()))
