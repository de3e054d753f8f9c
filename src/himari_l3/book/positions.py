r"""Positions: signed quantity, average entry, realised PnL and fees, moved by fills.

Average-cost accounting. A fill of signed quantity :math:`x` at price :math:`p` on a
position :math:`q` with average entry :math:`a`:

* same side (or flat): :math:`a' = (|q|\,a + |x|\,p) / (|q| + |x|)`, :math:`q' = q + x`;
* opposite side: the closed part :math:`k = \min(|x|, |q|)` realises
  :math:`k\,(p - a)\,\operatorname{sgn} q` (a `ClosedTrade`, with its return
  :math:`(p/a - 1)\,\operatorname{sgn} q`); a fill larger than the position flips it, and the
  remainder opens at :math:`a' = p`.

Fees are paid in the quote currency (USD) and kept apart from the realised PnL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ClosedTrade", "Position"]


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    """A position (or part of one) closed by a fill: what the learners need
    (``book/learning.py`` feeds them). ``side`` is the side of the position that was closed;
    ``strategies`` the shares of the symbol's standing target when the position was opened
    or added to (the strategies behind it), signed by each strategy's side."""

    portfolio: str
    symbol: str
    side: str  # "long" | "short"
    quantity: float
    entry_price: float
    exit_price: float
    realized_pnl: float
    realized_return: float
    closed_ns: int
    client_order_id: str
    strategies: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"portfolio": self.portfolio, "symbol": self.symbol, "side": self.side,
                "quantity": self.quantity, "entry_price": self.entry_price,
                "exit_price": self.exit_price, "realized_pnl": self.realized_pnl,
                "realized_return": self.realized_return, "closed_ns": self.closed_ns,
                "client_order_id": self.client_order_id, "strategies": dict(self.strategies)}


class Position:
    """One symbol's position in one portfolio (mutable; the book owns it)."""

    __slots__ = ("avg_price", "fees_paid", "quantity", "realized_pnl", "strategies", "symbol")

    def __init__(self, symbol: str, quantity: float = 0.0, avg_price: float = 0.0,
                 realized_pnl: float = 0.0, fees_paid: float = 0.0,
                 strategies: dict[str, float] | None = None) -> None:
        self.symbol = symbol
        self.quantity = quantity
        self.avg_price = avg_price
        self.realized_pnl = realized_pnl
        self.fees_paid = fees_paid
        self.strategies = dict(strategies or {})

    def fill(self, signed_qty: float, price: float, fee: float) -> tuple[float, float] | None:
        """Apply a fill; returns ``(closed quantity, realised PnL)`` if it closed some of
        the position, else None."""
        q, a = self.quantity, self.avg_price
        self.fees_paid += fee
        if q == 0.0 or (q > 0.0) == (signed_qty > 0.0):
            size = abs(q) + abs(signed_qty)
            self.avg_price = (abs(q) * a + abs(signed_qty) * price) / size
            self.quantity = q + signed_qty
            return None
        closed = min(abs(signed_qty), abs(q))
        pnl = closed * (price - a) * (1.0 if q > 0.0 else -1.0)
        self.realized_pnl += pnl
        left = q + signed_qty
        # A remainder within float noise of the closed size is a full close.
        if abs(left) <= 1e-12 * max(abs(q), abs(signed_qty)):
            left = 0.0
        self.quantity = left
        if left == 0.0:
            self.avg_price = 0.0
        elif (left > 0.0) != (q > 0.0):
            self.avg_price = price  # flipped: the remainder opened at this fill's price
        return closed, pnl

    def market_value(self, mark: float) -> float:
        return self.quantity * mark

    def unrealized_pnl(self, mark: float) -> float:
        return self.quantity * (mark - self.avg_price) if self.quantity else 0.0

    def to_state(self) -> list[Any]:
        return [self.quantity, self.avg_price, self.realized_pnl, self.fees_paid,
                dict(self.strategies)]  # a copy: a snapshot is encoded while requests go on

    @classmethod
    def from_state(cls, symbol: str, state: list[Any]) -> Position:
        q, a, r, f, strategies = state
        pos = cls(symbol, float(q), float(a), float(r), float(f),
                  {str(k): float(v) for k, v in strategies.items()})
        if not all(math.isfinite(x) for x in (pos.quantity, pos.avg_price, pos.realized_pnl,
                                              pos.fees_paid)):
            raise ValueError(f"position {symbol} has a non-finite field: {state!r}")
        return pos
