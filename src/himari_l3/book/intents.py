"""Order intents: what Layer 4 executes (the record is the contract, docs/execution.md).

Per symbol the book wants its projected position — position plus open intents — to reach
the target quantity ``target_usd / price``. `plan_legs` turns "from position ``q`` to target
``tau``" into legs, obeying the instrument's rules (``markets.py``):

* an **increase** (open, add) is rounded *toward zero* to the step size, capped at the
  maximum quantity, and dropped with its reason below the minimum quantity or notional, so
  the projected position never passes the target;
* a **reduction** is rounded *away from zero* (reduce at least what is needed) and raised to
  the minimum quantity / notional; when that reaches the whole position it becomes a close;
* a **close** (target 0, or the close leg of a flip long <-> short) takes the whole position,
  whatever its size, ``reduce_only``; a flip is a close leg plus an open leg;
* legs larger than the maximum quantity are split.

`client_order_id` is a hash (BLAKE2b) of (portfolio, decision id, symbol, leg): the same decision
re-sent cannot produce a second order, and an exchange accepts it (32 characters of
``[0-9a-z]``).
"""

from __future__ import annotations

import enum
import hashlib
import math
from typing import Any, NamedTuple

from .markets import MarketRules

_new = tuple.__new__  # legs from checked numbers, without the class call (hot path)

__all__ = [
    "DroppedIntent",
    "IntentCause",
    "IntentReason",
    "IntentState",
    "IntentStatus",
    "Leg",
    "OrderIntent",
    "client_order_id",
    "plan_legs",
]


class IntentReason(enum.StrEnum):
    """What an intent does to its position."""

    OPEN = "open"
    INCREASE = "increase"
    REDUCE = "reduce"
    CLOSE = "close"


class IntentCause(enum.StrEnum):
    """Which request made the book trade."""

    ALLOCATION = "allocation"
    FILL = "fill"
    RECONCILE = "reconcile"
    MARK = "mark"
    CONFIG = "config"
    LIMIT_REPAIR = "limit_repair"
    TRADING_STATE = "trading_state"  # an operator command (a halt flattens at once)
    CANCEL = "cancel"  # the executor cancelled intents (IOC / FOK rests, expiries)


class IntentStatus(enum.StrEnum):
    """Open until filled; superseded (a newer intent of its symbol replaced it), expired
    (older than ``execution.intent_ttl_sec``) or cancelled (the executor gave up on its rest:
    an IOC or FOK order, a rest below one lot) closes it."""

    OPEN = "open"
    FILLED = "filled"
    SUPERSEDED = "superseded"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


def client_order_id(portfolio: str, decision_id: int, symbol: str, leg: int) -> str:
    """Deterministic, exchange-safe order id (see the module docstring)."""
    key = f"{portfolio}\x1f{decision_id}\x1f{symbol}\x1f{leg}".encode()
    return "l3" + hashlib.blake2b(key, digest_size=15).hexdigest()


class _IntentFields(NamedTuple):
    intent_id: str
    client_order_id: str
    portfolio: str
    symbol: str
    side: str  # "buy" | "sell"
    quantity: float
    order_type: str  # "market" | "limit"
    limit_price: float | None
    reduce_only: bool
    time_in_force: str
    stop_loss_price: float | None
    take_profit_price: float | None
    reason: IntentReason
    cause: IntentCause
    decision_id: int
    reference_price: float
    notional_usd: float
    created_ns: int
    expires_at_ns: int


class OrderIntent(_IntentFields):
    """One order for Layer 4 (immutable; the book tracks fills beside it in `IntentState`).

    ``quantity`` in base units (> 0, on the step grid except a close of an off-grid
    position); ``reference_price`` the mark it was sized at and ``notional_usd`` =
    quantity x reference_price; ``limit_price`` set for limit orders; ``expires_at_ns``:
    Layer 4 must not work it after this time. A named tuple (the book makes several per
    request): built through the constructor it checks itself; the book's planner, whose
    numbers are checked already, builds it without the call (``_new``).
    """

    __slots__ = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> OrderIntent:
        self = super().__new__(cls, *args, **kwargs)
        if self.side not in ("buy", "sell"):
            raise ValueError(f"side was {self.side!r}, expected 'buy' or 'sell'")
        for name in ("quantity", "reference_price"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name} was {value!r}, expected a finite number > 0")
        return self

    @property
    def signed_quantity(self) -> float:
        return self.quantity if self.side == "buy" else -self.quantity

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (the Layer 4 contract; enums as their values)."""
        out = dict(zip(self._fields, self, strict=True))
        out["reason"] = self.reason.value
        out["cause"] = self.cause.value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OrderIntent:
        kw = dict(data)
        kw["reason"] = IntentReason(kw["reason"])
        kw["cause"] = IntentCause(kw["cause"])
        return cls(**kw)


class IntentState:
    """An issued intent and what happened to it (mutable; owned by the book)."""

    __slots__ = ("closed_ns", "filled", "intent", "status")

    def __init__(self, intent: OrderIntent, filled: float = 0.0,
                 status: IntentStatus = IntentStatus.OPEN, closed_ns: int | None = None) -> None:
        self.intent = intent
        self.filled = filled
        self.status = status
        self.closed_ns = closed_ns

    @property
    def remaining(self) -> float:
        return max(0.0, self.intent.quantity - self.filled)

    @property
    def signed_remaining(self) -> float:
        r = self.remaining
        return r if self.intent.side == "buy" else -r

    def view(self) -> dict[str, Any]:
        """The intent with its progress (``GET /v1/intents``)."""
        return {**self.intent.to_dict(), "status": self.status.value,
                "filled_quantity": self.filled, "remaining_quantity": self.remaining}

    def to_state(self) -> dict[str, Any]:
        return {"intent": self.intent.to_dict(), "filled": self.filled,
                "status": self.status.value, "closed_ns": self.closed_ns}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> IntentState:
        return cls(OrderIntent.from_dict(state["intent"]), float(state["filled"]),
                   IntentStatus(state["status"]), state["closed_ns"])


class Leg(NamedTuple):
    """One order of a plan: side, quantity (> 0), reduce-only, what it does."""

    side: str
    quantity: float
    reduce_only: bool
    reason: IntentReason


class DroppedIntent(NamedTuple):
    """An order the book wanted but did not issue, and why (reported, never sent)."""

    symbol: str
    side: str
    quantity: float
    reason: str  # no_trade_band | below_min_quantity | below_min_notional | no_market_rules

    def to_dict(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "side": self.side, "quantity": self.quantity,
                "reason": self.reason}


def _side(signed: float) -> str:
    return "buy" if signed > 0.0 else "sell"


def _split(side: str, qty: float, reason: IntentReason, rules: MarketRules | None) -> list[Leg]:
    """A reduce-only leg, split into pieces of at most the maximum quantity."""
    cap = rules.floor_quantity(rules.max_quantity) if rules and rules.max_quantity else None
    if not cap or qty <= cap:
        return [_new(Leg, (side, qty, True, reason))]
    n = math.floor(qty / cap)
    legs = [Leg(side, cap, True, reason)] * n
    rest = qty - n * cap
    if rest > 1e-12 * qty:
        legs.append(Leg(side, rest, True, reason))
    return legs


def _increase(symbol: str, delta: float, price: float, rules: MarketRules | None,
              reason: IntentReason) -> tuple[list[Leg], list[DroppedIntent]]:
    side = _side(delta)
    if rules is None:
        return [], [DroppedIntent(symbol, side, abs(delta), "no_market_rules")]
    qty = rules.floor_quantity(abs(delta))
    if rules.max_quantity is not None:
        qty = min(qty, rules.floor_quantity(rules.max_quantity))
    why = ("below_min_quantity" if qty <= 0.0 or qty < rules.min_quantity else
           "below_min_notional" if qty * price < rules.min_notional else None)
    if why is not None:
        return [], [DroppedIntent(symbol, side, abs(delta), why)]
    return [_new(Leg, (side, qty, False, reason))], []


def _reduce(q: float, need: float, price: float, rules: MarketRules | None) -> list[Leg]:
    """Reduce ``q`` by at least ``need`` (> 0, < |q|): rounded up, raised to the minimums,
    a close when that reaches the whole position."""
    side = _side(-q)
    if rules is not None:
        need = max(rules.ceil_quantity(need), rules.min_quantity)
        if rules.min_notional > 0.0:
            need = max(need, rules.ceil_quantity(rules.min_notional / price))
    if need >= abs(q):
        return _split(side, abs(q), IntentReason.CLOSE, rules)
    return _split(side, need, IntentReason.REDUCE, rules)


def plan_legs(symbol: str, q: float, tau: float, price: float,
              rules: MarketRules | None) -> tuple[list[Leg], list[DroppedIntent]]:
    """The legs that take position ``q`` to target ``tau`` (signed base units) at ``price``
    under ``rules`` (None: the markets file does not list the symbol — reductions and closes
    still go out, unrounded; increases are dropped). See the module docstring."""
    if q != 0.0 and (tau == 0.0 or (q > 0.0) != (tau > 0.0)):
        close = _split(_side(-q), abs(q), IntentReason.CLOSE, rules)
        if tau == 0.0:
            return close, []
        legs, dropped = _increase(symbol, tau, price, rules, IntentReason.OPEN)
        return close + legs, dropped
    if abs(tau) > abs(q):
        return _increase(symbol, tau - q, price, rules,
                         IntentReason.OPEN if q == 0.0 else IntentReason.INCREASE)
    if abs(tau) < abs(q):
        return _reduce(q, abs(q) - abs(tau), price, rules), []
    return [], []
