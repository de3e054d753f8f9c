"""What Layer 4 reports back: fills of intents, and authoritative positions snapshots.

Both are immutable, self-validating records; a bad field raises
`InvalidBookRequestException` naming it (``path`` locates it in the request, e.g.
``("fills", 2, "quantity")``). Whether a fill fits the book (a known order, its side, no
more than it has left) is checked by the book, over the whole request, before anything
changes (``book.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._exceptions import InvalidBookRequestException
from .._validate import nonempty_str

__all__ = ["MAX_PRICE", "MAX_QUANTITY", "Fill", "PositionsSnapshot", "SnapshotPosition"]

MAX_QUANTITY = 1e12  # base units: bounds every product with a price to a finite number
MAX_PRICE = 1e12


def _bad(path: tuple[str | int, ...], value: object, expected: str) -> None:
    raise InvalidBookRequestException(".".join(str(p) for p in path), value, expected,
                                      path=path)


def _number(path: tuple[str | int, ...], value: object, lo: float, hi: float, *,
            open_lo: bool) -> float:
    ok = (not isinstance(value, bool) and isinstance(value, (int, float))
          and math.isfinite(value) and (value > lo if open_lo else value >= lo) and value <= hi)
    if not ok:
        bounds = ("" if math.isinf(lo) else f" {'>' if open_lo else '>='} {lo:g} and") + (
            "" if math.isinf(hi) else f" <= {hi:g}")
        _bad(path, value, f"a finite number{bounds.removesuffix(' and')}")
    return float(value)  # type: ignore[arg-type]


def _timestamp(path: tuple[str | int, ...], value: object) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or not 0 <= value < 2**63):
        _bad(path, value, "an int64 number of nanoseconds >= 0 (or null: the request's time)")
    return value  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Fill:
    """An execution of an intent: ``quantity`` (> 0, base units) at ``price`` on ``side``,
    ``fee`` paid in USD (negative: a rebate), the intent's ``client_order_id``. ``fill_id``
    (the exchange's trade id, optional) makes a re-sent fill recognisable; without it a
    fill is recognised by all its fields."""

    symbol: str
    side: str
    quantity: float
    price: float
    client_order_id: str
    fee: float = 0.0
    timestamp_ns: int | None = None
    fill_id: str | None = None
    index: int = 0  # where it was in the request (errors name it)

    def __post_init__(self) -> None:
        at = ("fills", self.index)
        for name in ("symbol", "client_order_id"):
            try:
                nonempty_str(InvalidBookRequestException, name, getattr(self, name))
            except InvalidBookRequestException as err:
                _bad((*at, name), err.value, err.expected)
        if self.side not in ("buy", "sell"):
            _bad((*at, "side"), self.side, "'buy' or 'sell'")
        object.__setattr__(self, "quantity", _number((*at, "quantity"), self.quantity, 0.0,
                                                     MAX_QUANTITY, open_lo=True))
        object.__setattr__(self, "price", _number((*at, "price"), self.price, 0.0, MAX_PRICE,
                                                  open_lo=True))
        fee = _number((*at, "fee"), self.fee, -math.inf, math.inf, open_lo=True)
        if abs(fee) > self.quantity * self.price:
            _bad((*at, "fee"), fee, f"|fee| <= quantity x price ({self.quantity * self.price:g})")
        object.__setattr__(self, "fee", fee)
        _timestamp((*at, "timestamp_ns"), self.timestamp_ns)
        if self.fill_id is not None:
            try:
                nonempty_str(InvalidBookRequestException, "fill_id", self.fill_id, 128)
            except InvalidBookRequestException as err:
                _bad((*at, "fill_id"), err.value, err.expected)

    @property
    def signed_quantity(self) -> float:
        return self.quantity if self.side == "buy" else -self.quantity

    def key(self) -> str:
        """What makes a re-sent fill the same fill."""
        if self.fill_id is not None:
            return f"id\x1f{self.client_order_id}\x1f{self.fill_id}"
        return (f"f\x1f{self.client_order_id}\x1f{self.timestamp_ns}\x1f{self.quantity!r}"
                f"\x1f{self.price!r}\x1f{self.fee!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "side": self.side, "quantity": self.quantity,
                "price": self.price, "fee": self.fee, "client_order_id": self.client_order_id,
                "timestamp_ns": self.timestamp_ns, "fill_id": self.fill_id}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], index: int = 0) -> Fill:
        return cls(data["symbol"], data["side"], data["quantity"], data["price"],
                   data["client_order_id"], data.get("fee", 0.0), data.get("timestamp_ns"),
                   data.get("fill_id"), index)


@dataclass(frozen=True, slots=True)
class SnapshotPosition:
    """One symbol of a positions snapshot: the signed quantity the venue holds, and
    optionally its average entry and the current price (the mark)."""

    quantity: float
    avg_price: float | None = None
    price: float | None = None


@dataclass(frozen=True, slots=True)
class PositionsSnapshot:
    """An authoritative, complete picture of one portfolio at ``timestamp_ns``: every
    position (a symbol it does not list is flat) and optionally the cash balance."""

    positions: dict[str, SnapshotPosition]
    cash: float | None = None
    timestamp_ns: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PositionsSnapshot:
        """Validate a plain snapshot (errors name ``positions.<symbol>.<field>``)."""
        raw = data.get("positions", {})
        if not isinstance(raw, Mapping):
            _bad(("positions",), raw, "an object of symbol -> position")
        out: dict[str, SnapshotPosition] = {}
        for sym, pos in raw.items():
            at = ("positions", sym)
            try:
                nonempty_str(InvalidBookRequestException, "symbol", sym)
            except InvalidBookRequestException:
                _bad(at, sym, "a non-empty printable symbol of at most 64 characters")
            if not isinstance(pos, Mapping):
                _bad(at, pos, "an object with quantity (and avg_price, price)")
            q = _number((*at, "quantity"), pos.get("quantity"), -MAX_QUANTITY, MAX_QUANTITY,
                        open_lo=False)
            prices = [None if pos.get(k) is None else
                      _number((*at, k), pos.get(k), 0.0, MAX_PRICE, open_lo=True)
                      for k in ("avg_price", "price")]
            out[sym] = SnapshotPosition(q, prices[0], prices[1])
        cash = data.get("cash")
        cash_v = None if cash is None else _number(("cash",), cash, -1e15, 1e15, open_lo=False)
        return cls(out, cash_v, _timestamp(("timestamp_ns",), data.get("timestamp_ns")))

    def to_dict(self) -> dict[str, Any]:
        return {"positions": {s: {"quantity": p.quantity, "avg_price": p.avg_price,
                                  "price": p.price} for s, p in self.positions.items()},
                "cash": self.cash, "timestamp_ns": self.timestamp_ns}
