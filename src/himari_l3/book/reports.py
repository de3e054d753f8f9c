"""Applying what Layer 4 reports: fills (checked as a whole first) and positions snapshots.

**Fills.** Every fill of a request is checked against the book before any is applied: its
``client_order_id`` names an intent the book issued (open, or closed recently enough to be
kept — a fill can race a cancel), on that intent's symbol and side, and the request's fills
of an intent add up to no more than what it has left. Any failure refuses the whole request
(`InvalidBookRequestException`, naming ``fills[i].<field>``). A fill the book has seen
already (same ``fill_id``, or all the same fields) is a no-op, and so is a fill stamped at or
before the portfolio's last reconciled snapshot (the snapshot includes it).

**Snapshots.** A positions snapshot is the venue's truth: each position takes the snapshot's
quantity (a symbol it does not list is flat), average entry (given, or kept, or the mark for
what the book did not know about) and price. Each difference is reported. Without a cash
balance, a quantity difference is booked as traded at the mark (equity does not jump); with
one, the cash is set. Every open intent is superseded (its fills may be in the snapshot): the
book re-plans from the reconciled positions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

from .._exceptions import InvalidBookRequestException
from .fills import Fill, PositionsSnapshot, SnapshotPosition
from .intents import IntentState, IntentStatus
from .portfolio import PortfolioBook
from .positions import ClosedTrade, Position

__all__ = ["FillCheck", "PositionDifference", "apply_fill", "check_fills", "check_snapshot",
           "reconcile"]

Finder = Callable[[str], tuple[PortfolioBook, IntentState] | None]


class FillCheck(NamedTuple):
    """One fill of a request, checked: where it goes, and "apply", "duplicate" or
    "before_reconcile"."""

    fill: Fill
    book: PortfolioBook
    state: IntentState
    result: str
    timestamp_ns: int


class PositionDifference(NamedTuple):
    """One thing a snapshot corrected: the symbol ("" for cash), the field (quantity,
    avg_price, cash), the book's value, the snapshot's, and the absolute USD difference."""

    symbol: str
    field: str
    book: float
    snapshot: float
    usd: float

    def to_dict(self) -> dict[str, object]:
        return self._asdict()


def _refuse(fill: Fill, field: str, value: object, expected: str) -> None:
    path = ("fills", fill.index, field)
    raise InvalidBookRequestException(f"fills[{fill.index}].{field}", value, expected,
                                      path=path)


def check_fills(fills: Sequence[Fill], find: Finder, now: int) -> list[FillCheck]:
    """Check a whole request (module docstring); nothing changes here."""
    out: list[FillCheck] = []
    pending: dict[str, float] = {}
    keys: set[str] = set()
    for f in fills:
        found = find(f.client_order_id)
        if found is None:
            _refuse(f, "client_order_id", f.client_order_id,
                    "the client_order_id of an intent this service issued (open, or among "
                    "the last execution.closed_intents_kept closed ones)")
            continue  # (unreachable: _refuse raises)
        pb, state = found
        intent = state.intent
        if f.symbol != intent.symbol:
            _refuse(f, "symbol", f.symbol, f"{intent.symbol!r} (the intent's symbol)")
        if f.side != intent.side:
            _refuse(f, "side", f.side, f"{intent.side!r} (the intent's side)")
        if f.quantity > intent.quantity * (1.0 + 1e-9):
            _refuse(f, "quantity", f.quantity, f"at most the intent's quantity "
                    f"{intent.quantity:g}")
        ts = f.timestamp_ns if f.timestamp_ns is not None else now
        key = f.key()
        if pb.seen_fill(key) or key in keys:
            out.append(FillCheck(f, pb, state, "duplicate", ts))
            continue
        keys.add(key)
        # A fill stamped at or before the last snapshot is in it; an unstamped one is news.
        if f.timestamp_ns is not None and ts <= pb.last_reconcile_ns:
            out.append(FillCheck(f, pb, state, "before_reconcile", ts))
            continue
        used = pending.get(intent.client_order_id, 0.0) + f.quantity
        if used > state.remaining * (1.0 + 1e-9) + 1e-12:
            _refuse(f, "quantity", f.quantity, f"at most the intent's remaining quantity "
                    f"{state.remaining - (used - f.quantity):g} (an over-fill)")
        pending[intent.client_order_id] = used
        out.append(FillCheck(f, pb, state, "apply", ts))
    return out


def apply_fill(check: FillCheck, now: int) -> ClosedTrade | None:
    """Apply one checked fill: the intent, the position, cash, the mark."""
    f, pb, state = check.fill, check.book, check.state
    pb.remember_fill(f.key())
    state.filled = min(state.intent.quantity, state.filled + f.quantity)
    if state.status is IntentStatus.OPEN and state.remaining <= 1e-9 * state.intent.quantity:
        pb.close_intent(state, IntentStatus.FILLED, now)
    pos = pb.positions.get(f.symbol)
    if pos is None:
        pos = pb.positions[f.symbol] = Position(f.symbol)
    entry = pos.avg_price
    signed = f.signed_quantity
    if pos.quantity == 0.0 or (pos.quantity > 0.0) == (signed > 0.0):
        pos.strategies = pb.strategy_shares(f.symbol) or pos.strategies
    closed = pos.fill(signed, f.price, f.fee)
    pb.cash -= signed * f.price + f.fee
    pb.marks[f.symbol] = f.price
    pb.fills_applied += 1
    if closed is None:
        return None
    qty, pnl = closed
    side = "short" if signed > 0.0 else "long"
    ret = pnl / (qty * entry) if entry > 0.0 else 0.0
    return ClosedTrade(pb.name, f.symbol, side, qty, entry, f.price, pnl, ret, check.timestamp_ns,
                       f.client_order_id, dict(pos.strategies))


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def check_snapshot(pb: PortfolioBook | None, snap: PositionsSnapshot) -> None:
    """Every position the snapshot holds needs a price: its own, the book's mark, or its
    average entry (raises `InvalidBookRequestException`; nothing changes)."""
    marks = pb.marks if pb is not None else {}
    for sym, sp in snap.positions.items():
        if sp.quantity != 0.0 and sp.price is None and sym not in marks \
                and sp.avg_price is None:
            raise InvalidBookRequestException(
                f"positions.{sym}.price", None, f"a price (> 0): the book has none for {sym}",
                path=("positions", sym, "price"))


def _avg(pos: Position, sp: SnapshotPosition, mark: float) -> float:
    """The average entry after a snapshot: given, kept, or the mark for what is new."""
    q, new = pos.quantity, sp.quantity
    if sp.avg_price is not None:
        return sp.avg_price
    if new == 0.0:
        return 0.0
    if q != 0.0 and (q > 0.0) == (new > 0.0):
        if abs(new) <= abs(q):
            return pos.avg_price
        return (abs(q) * pos.avg_price + (abs(new) - abs(q)) * mark) / abs(new)
    return mark


def reconcile(pb: PortfolioBook, snap: PositionsSnapshot,
              now: int) -> tuple[list[PositionDifference], int]:
    """Make ``pb`` match the snapshot (module docstring); returns the differences and how
    many open intents it superseded."""
    check_snapshot(pb, snap)
    pb.mark({s: sp.price for s, sp in snap.positions.items() if sp.price is not None})
    out: list[PositionDifference] = []
    held = {s for s, p in pb.positions.items() if p.quantity != 0.0}
    for sym in sorted(held | snap.positions.keys()):
        sp = snap.positions.get(sym, SnapshotPosition(0.0))
        if sp.quantity == 0.0 and sym not in held:
            continue  # flat on both sides
        # (check_snapshot: a symbol held on either side has a mark or an average entry.)
        mark = pb.marks.get(sym) or sp.avg_price or 0.0
        pb.marks.setdefault(sym, mark)
        pos = pb.positions.get(sym) or pb.positions.setdefault(sym, Position(sym))
        if not _close(pos.quantity, sp.quantity):
            out.append(PositionDifference(sym, "quantity", pos.quantity, sp.quantity,
                                          abs(sp.quantity - pos.quantity) * mark))
        avg = _avg(pos, sp, mark)
        if sp.avg_price is not None and pos.quantity != 0.0 and not _close(pos.avg_price, avg):
            out.append(PositionDifference(sym, "avg_price", pos.avg_price, avg,
                                          abs(avg - pos.avg_price) * abs(sp.quantity)))
        if snap.cash is None:
            pb.cash -= (sp.quantity - pos.quantity) * mark
        pos.quantity, pos.avg_price = sp.quantity, avg
    if snap.cash is not None and not _close(pb.cash, snap.cash):
        out.append(PositionDifference("", "cash", pb.cash, snap.cash, abs(snap.cash - pb.cash)))
    if snap.cash is not None:
        pb.cash = snap.cash
    superseded = pb.open_intents()
    for state in superseded:
        pb.close_intent(state, IntentStatus.SUPERSEDED, now)
    pb.last_reconcile_ns = max(pb.last_reconcile_ns,
                               snap.timestamp_ns if snap.timestamp_ns is not None else now)
    pb.reconciles += 1
    return out, len(superseded)
