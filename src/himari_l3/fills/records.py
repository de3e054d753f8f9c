"""The fill model's records: an order to simulate, a price observation, a simulated fill.

Frozen and self-validating like every contract (a bad value names the field, the value and
the allowed range). An order is what an order intent becomes once submitted to an executor:
the fields the fill model needs, keyed by the intent's idempotent ``client_order_id``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

from .._exceptions import ValidationError

__all__ = ["OrderSide", "Quote", "SimFill", "SimOrder", "TimeInForce"]


class OrderSide(enum.StrEnum):
    """Buy or sell (``sign`` +1 / -1)."""

    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is OrderSide.BUY else -1

    @classmethod
    def _missing_(cls, value: object) -> OrderSide | None:
        if isinstance(value, str):
            return cls.__members__.get(value.strip().upper())
        return None


class TimeInForce(enum.StrEnum):
    """GTC: the unfilled rest waits for the next observations; IOC: it is cancelled after
    the first observation at which the order could trade; FOK: that observation fills all
    of it or none of it (then it is cancelled)."""

    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"

    @classmethod
    def _missing_(cls, value: object) -> TimeInForce | None:
        if isinstance(value, str):
            return cls.__members__.get(value.strip().upper())
        return None


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value > 0):
        raise ValidationError(name, value, "a finite number > 0")
    return float(value)


def _key(name: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 128 or not value.isprintable():
        raise ValidationError(name, value, "a printable string of 1 to 128 characters")
    return value


@dataclass(frozen=True, slots=True)
class SimOrder:
    """An order the fill model works: ``quantity`` > 0 in base units, submitted at
    ``submitted_ns`` (the decision's time); ``limit_price`` None for a market order;
    ``expires_ns``: not worked at or after this time (None: until filled or cancelled)."""

    client_order_id: str
    symbol: str
    side: OrderSide
    quantity: float
    submitted_ns: int
    limit_price: float | None = None
    reduce_only: bool = False
    time_in_force: TimeInForce = TimeInForce.GTC
    expires_ns: int | None = None

    def __post_init__(self) -> None:
        _key("client_order_id", self.client_order_id)
        _key("symbol", self.symbol)
        if type(self.side) is not OrderSide:
            object.__setattr__(self, "side", OrderSide(self.side))
        q = self.quantity
        if type(q) is not float or not 0.0 < q < math.inf:
            object.__setattr__(self, "quantity", _positive("quantity", q))
        if type(self.time_in_force) is not TimeInForce:
            object.__setattr__(self, "time_in_force", TimeInForce(self.time_in_force))
        if self.limit_price is not None:
            object.__setattr__(self, "limit_price", _positive("limit_price", self.limit_price))
        for name in ("submitted_ns", "expires_ns"):
            value = getattr(self, name)
            if (value is not None or name == "submitted_ns") and (
                    isinstance(value, bool) or not isinstance(value, int)):
                raise ValidationError(name, value, "an integer (nanoseconds)")

    def to_dict(self) -> dict[str, Any]:
        return {"client_order_id": self.client_order_id, "symbol": self.symbol,
                "side": self.side.value, "quantity": self.quantity,
                "submitted_ns": self.submitted_ns, "limit_price": self.limit_price,
                "reduce_only": self.reduce_only, "time_in_force": self.time_in_force.value,
                "expires_ns": self.expires_ns}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimOrder:
        return cls(d["client_order_id"], d["symbol"], OrderSide(d["side"]), d["quantity"],
                   int(d["submitted_ns"]), d["limit_price"], bool(d["reduce_only"]),
                   TimeInForce(d["time_in_force"]), d.get("expires_ns"))


@dataclass(frozen=True, slots=True)
class Quote:
    """A price observation for ``symbol`` at ``timestamp_ns``: a bar's close in the backtest,
    a request's price in the service. ``volume`` (base units traded over the interval the
    observation closes) bounds participation and drives impact; None = unknown."""

    symbol: str
    price: float
    timestamp_ns: int
    volume: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "price", _positive("price", self.price))
        v = self.volume
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                              or not math.isfinite(v) or v < 0):
            raise ValidationError("volume", v, "None or a finite number >= 0")


@dataclass(frozen=True, slots=True)
class SimFill:
    """One simulated execution: ``quantity`` at ``price`` (slippage included), paying
    ``fee`` (quote currency). ``reference_price`` is the observation it filled against,
    ``slippage_bps`` the adverse distance from it; ``remaining`` what is left of the order,
    ``done`` True when the order is finished (filled, or an IOC rest cancelled)."""

    client_order_id: str
    symbol: str
    side: OrderSide
    quantity: float
    price: float
    fee: float
    reference_price: float
    slippage_bps: float
    timestamp_ns: int
    remaining: float
    done: bool
    reduce_only: bool = False

    @property
    def signed_quantity(self) -> float:
        """+quantity for a buy, -quantity for a sell."""
        return self.quantity if self.side is OrderSide.BUY else -self.quantity

    @property
    def notional(self) -> float:
        return self.quantity * self.price

    def to_dict(self) -> dict[str, Any]:
        return {"client_order_id": self.client_order_id, "symbol": self.symbol,
                "side": self.side.value, "quantity": self.quantity, "price": self.price,
                "fee": self.fee, "reference_price": self.reference_price,
                "slippage_bps": self.slippage_bps, "timestamp_ns": self.timestamp_ns,
                "remaining": self.remaining, "done": self.done,
                "reduce_only": self.reduce_only}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimFill:
        return cls(d["client_order_id"], d["symbol"], OrderSide(d["side"]),
                   float(d["quantity"]), float(d["price"]), float(d["fee"]),
                   float(d["reference_price"]), float(d["slippage_bps"]),
                   int(d["timestamp_ns"]), float(d["remaining"]), bool(d["done"]),
                   bool(d.get("reduce_only", False)))
