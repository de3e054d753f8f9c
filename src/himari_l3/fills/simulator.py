"""Orders worked against price observations with one `FillModel`: latency, partial fills,
time in force, limits. Pure and deterministic (no clock of its own: an order carries its
submission time, an observation its own), so the backtest and the paper executor share it.

An order submitted at :math:`t_s` is *eligible* at an observation of its symbol stamped
:math:`t \\ge t_s` once it has let ``latency_bars`` such observations pass and
:math:`t - t_s \\ge` ``latency_sec`` (0 and 0: the observation the order was decided on fills
it — the backtest's "trade at the close"; 1 bar: the next bar's close). Eligible orders fill
in submission order, sharing the observation's capacity (the participation cap); what the
capacity or the venue's quantity grid leaves waits for the next observation (GTC) or is
cancelled (IOC); a FOK order fills whole at its first eligible observation or is cancelled.
A limit order fills only at an execution price (slippage included) at or better than its
limit. A rest that rounds down to nothing on the grid cannot trade and finishes the order;
an order past its ``expires_ns`` is cancelled at the next observation of its symbol.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .._exceptions import StateRestoreError
from .model import FillModel
from .records import OrderSide, Quote, SimFill, SimOrder, TimeInForce

__all__ = ["FillSimulator", "Worked"]

_EXPORT_VERSION = 1
_DUST = 1e-12  # a rest below this fraction of the order is rounding, not a quantity


class Worked(NamedTuple):
    """What one observation did: the fills, and the orders it cancelled with their unfilled
    rest (IOC orders that could not fill completely)."""

    fills: list[SimFill]
    cancelled: list[tuple[SimOrder, float]]


@dataclass(slots=True)
class _Working:
    order: SimOrder
    remaining: float
    wait: int  # observations still to let pass (latency_bars)
    fills: int = 0


@dataclass(slots=True)
class _Book:
    by_symbol: dict[str, dict[str, _Working]] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)  # client_order_id -> symbol


def _any_quantity(_: str, quantity: float) -> float:
    return quantity


class FillSimulator:
    """Pending orders and the observations that fill them (module docstring).

    ``round_down(symbol, quantity)``: ``quantity`` rounded toward zero to the venue's
    quantity grid for ``symbol`` (default: any quantity trades; the service and the
    backtest pass the markets file's rules, ``MarketRules.floor_quantity``).
    """

    def __init__(self, model: FillModel | None = None, *,
                 round_down: Callable[[str, float], float] | None = None) -> None:
        self.model = model if model is not None else FillModel()
        self.round_down = round_down if round_down is not None else _any_quantity
        self._book = _Book()

    # ------------------------------------------------------------------ orders
    def submit(self, order: SimOrder) -> bool:
        """Start working ``order``; False (and nothing changes) if an order with its
        ``client_order_id`` is already working (a re-send is idempotent)."""
        if order.client_order_id in self._book.ids:
            return False
        self._book.ids[order.client_order_id] = order.symbol
        self._book.by_symbol.setdefault(order.symbol, {})[order.client_order_id] = _Working(
            order, order.quantity, self.model.config.latency_bars)
        return True

    def cancel(self, client_order_id: str) -> tuple[SimOrder, float] | None:
        """Stop working an order; returns it with its unfilled rest (None: not working)."""
        symbol = self._book.ids.pop(client_order_id, None)
        if symbol is None:
            return None
        orders = self._book.by_symbol[symbol]
        w = orders.pop(client_order_id)
        if not orders:
            del self._book.by_symbol[symbol]
        return w.order, w.remaining

    def open_orders(self) -> list[tuple[SimOrder, float]]:
        """Every working order with its unfilled rest, by symbol then submission."""
        return [(w.order, w.remaining) for sym in sorted(self._book.by_symbol)
                for w in self._book.by_symbol[sym].values()]

    def __len__(self) -> int:
        return len(self._book.ids)

    # ------------------------------------------------------------- observations
    def on_quote(self, quote: Quote,
                 recorded: Mapping[str, SimFill] | None = None) -> Worked:
        """Work the symbol's orders against one observation.

        ``recorded`` (replay): the fills this observation produced when it was first
        worked, by ``client_order_id``; they are applied instead of simulated (eligibility,
        latency and time in force are worked as live), so a replay reproduces the journaled
        fills even if the fill model changed since."""
        orders = self._book.by_symbol.get(quote.symbol)
        fills: list[SimFill] = []
        cancelled: list[tuple[SimOrder, float]] = []
        if not orders:
            return Worked(fills, cancelled)
        capacity = self.model.capacity(quote.volume)
        taken = 0.0
        finished: list[str] = []
        latency_ns = self.model.latency_ns
        for coid, w in orders.items():
            o = w.order
            if quote.timestamp_ns < o.submitted_ns:
                continue  # an observation from before the order
            if o.expires_ns is not None and quote.timestamp_ns >= o.expires_ns:
                finished.append(coid)
                cancelled.append((o, w.remaining))
                continue
            if w.wait > 0:
                w.wait -= 1
                continue
            if quote.timestamp_ns - o.submitted_ns < latency_ns:
                continue
            fill = (self._fill(w, quote, capacity - taken) if recorded is None
                    else self._replay(w, recorded.get(coid)))
            if fill is not None:
                taken += fill.quantity
                fills.append(fill)
                if fill.done:
                    finished.append(coid)
                    continue
            if o.time_in_force is not TimeInForce.GTC:
                finished.append(coid)
                cancelled.append((o, w.remaining))
        for coid in finished:
            del orders[coid]
            del self._book.ids[coid]
        if not orders:
            del self._book.by_symbol[quote.symbol]
        return Worked(fills, cancelled)

    def _fill(self, w: _Working, quote: Quote, capacity: float) -> SimFill | None:
        o, model = w.order, self.model
        q = w.remaining if capacity >= w.remaining else self.round_down(o.symbol, capacity)
        if not q > 0.0 or (o.time_in_force is TimeInForce.FOK and q < w.remaining):
            return None
        slip = model.slippage_bps(q, quote.volume, o.client_order_id, w.fills)
        sign = o.side.sign
        price = model.fill_price(sign, quote.price, slip)
        limit = o.limit_price
        if limit is not None and (price > limit if sign > 0 else price < limit):
            return None
        w.fills += 1
        w.remaining -= q
        rest = w.remaining
        if rest <= _DUST * o.quantity:
            w.remaining = rest = 0.0
        done = (rest == 0.0 or not self.round_down(o.symbol, rest) > 0.0
                or o.time_in_force is not TimeInForce.GTC)
        return SimFill(o.client_order_id, o.symbol, o.side, q, price, model.fee(q, price),
                       quote.price, slip, quote.timestamp_ns, rest, done, o.reduce_only)

    @staticmethod
    def _replay(w: _Working, fill: SimFill | None) -> SimFill | None:
        if fill is not None:
            w.fills += 1
            w.remaining = fill.remaining
        return fill

    # -------------------------------------------------------------- persistence
    def export_state(self) -> dict[str, Any]:
        """The working orders, in the order they were submitted per symbol."""
        return {"version": _EXPORT_VERSION, "orders": [
            {"order": w.order.to_dict(), "remaining": w.remaining, "wait": w.wait,
             "fills": w.fills}
            for sym in sorted(self._book.by_symbol)
            for w in self._book.by_symbol[sym].values()]}

    def restore_state(self, data: dict[str, Any]) -> None:
        """Restore `export_state` output; `StateRestoreError` (nothing changed) if malformed."""
        book = _Book()
        try:
            if data["version"] != _EXPORT_VERSION:
                raise ValueError(f"version {data['version']!r} != {_EXPORT_VERSION}")
            for d in data["orders"]:
                order = SimOrder.from_dict(d["order"])
                remaining = float(d["remaining"])
                if not 0.0 <= remaining <= order.quantity:
                    raise ValueError(f"remaining {remaining!r} outside [0, quantity]")
                book.ids[order.client_order_id] = order.symbol
                book.by_symbol.setdefault(order.symbol, {})[order.client_order_id] = _Working(
                    order, remaining, int(d["wait"]), int(d["fills"]))
        except (KeyError, TypeError, ValueError) as err:
            raise StateRestoreError(f"fill simulator: cannot restore: {err!r}") from None
        self._book = book


def side_of(signed_quantity: float) -> OrderSide:
    """The side of a signed order quantity (positive: buy)."""
    return OrderSide.BUY if signed_quantity > 0 else OrderSide.SELL
