"""One portfolio's book: cash, marks, positions, standing targets, intents (mutable state).

``PortfolioBook`` holds the state and the small operations on it; the decisions — how a
batch shares the limits with the standing targets, which intents to issue — are in
``book.py`` and ``rebalance.py``. Everything here is deterministic: the same operations in
the same order give the same state, which `to_state` / `from_state` round-trip exactly.

* **equity** = cash + sum of quantity x mark. Cash starts at the capital
  (``portfolio_value``), pays for fills (quantity x price + fee) and moves with a capital
  change (a reload of ``portfolio_value``) or an authoritative cash balance (reconcile).
* **standing targets**: signed USD per strategy x symbol, each with the time it was set
  (``updated``) — a target older than ``book.target_ttl_sec`` decays to 0 — and per symbol
  the stop-loss / take-profit prices the decision behind it carried.
* **intents**: open ones per symbol (``live``), and the last ``execution.closed_intents_kept``
  closed ones (a fill racing a cancel still finds its intent).
* **trading state**: the portfolio's and its symbols' ACTIVE / REDUCING / HALTED
  (``trading``, a `TradingStateMachine`); the rebalance asks it what each symbol may do.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from ..portfolio.budgets import Contrib
from ..trading import TradingState, TradingStateMachine
from .exposure import TargetStats
from .intents import IntentState, IntentStatus
from .positions import Position

__all__ = ["PortfolioBook"]

RECENT_FILLS_KEPT = 4096  # fill keys remembered per portfolio (a re-sent fill is a no-op)


class PortfolioBook:
    """The book of one portfolio (see the module docstring)."""

    def __init__(self, name: str, capital: float, closed_kept: int,
                 trading: TradingStateMachine | None = None) -> None:
        self.name = name
        self.capital = capital
        self.cash = capital
        self.marks: dict[str, float] = {}
        self.positions: dict[str, Position] = {}
        self.targets: Contrib = {}  # replaced only through set_targets (keeps _nets true)
        self.updated: dict[str, dict[str, int]] = {}
        self._nets: TargetStats | None = None
        # (targets, caps, equity) of the last check that the targets fit (Book._repair_targets)
        self.fit_checked: tuple[Contrib, object, float] | None = None
        self._oldest = 0  # the earliest time in `updated` (decay is skipped before it ages)
        self.brackets: dict[str, tuple[float | None, float | None]] = {}
        self.live: dict[str, list[IntentState]] = {}
        self.closed: deque[IntentState] = deque()
        self.closed_kept = closed_kept
        self.by_cid: dict[str, IntentState] = {}
        self.recent_fills: deque[str] = deque()
        self._recent: set[str] = set()
        self.last_reconcile_ns = -1
        self.trading = trading if trading is not None else TradingStateMachine(portfolio=name)
        # The decision path ("rl" | "baseline") of the allocation that last set each
        # symbol's target: a closed trade's outcome joins that path's history.
        self.paths: dict[str, str] = {}
        self.fills_applied = 0
        self.reconciles = 0

    @property
    def trading_state(self) -> TradingState:
        """The portfolio's own trading state."""
        return self.trading.state

    # ------------------------------------------------------------------ marks and money
    def mark(self, prices: Mapping[str, float]) -> None:
        """Take the latest prices (finite, > 0; anything else is not a price)."""
        for sym, price in prices.items():
            if isinstance(price, float | int) and not isinstance(price, bool) and \
                    0.0 < price < float("inf"):
                self.marks[sym] = float(price)

    def forget_idle_marks(self, limit: int) -> None:
        """Past ``limit`` marks, drop those of symbols the book holds nothing of — no
        position, target, bracket or open intent — so that every symbol a caller ever
        priced does not stay for ever (issue 13). Deterministic: a function of the state."""
        if len(self.marks) <= limit:
            return
        used = (self.positions.keys() | self.target_symbols() | self.live.keys()
                | self.brackets.keys())
        self.marks = {s: p for s, p in self.marks.items() if s in used}

    def equity(self) -> float:
        return self.cash + sum(p.quantity * self.marks[s] for s, p in self.positions.items())

    def position_qty(self, symbol: str) -> float:
        pos = self.positions.get(symbol)
        return pos.quantity if pos is not None else 0.0

    def live_qty(self, symbol: str) -> float:
        """Signed remaining quantity of the symbol's open intents."""
        states = self.live.get(symbol)
        if not states:
            return 0.0
        return sum(s.signed_remaining for s in states)

    def projected(self) -> dict[str, float]:
        """Signed USD per symbol of position plus open intents, at the marks."""
        out: dict[str, float] = {}
        for sym in sorted(self.positions.keys() | self.live.keys()):
            qty = self.position_qty(sym) + self.live_qty(sym)
            if qty != 0.0:
                out[sym] = qty * self.marks[sym]
        return out

    def adjust_capital(self, delta: float) -> None:
        """A deposit (> 0) or withdrawal: ``portfolio_value`` changed by ``delta``."""
        self.capital += delta
        self.cash += delta

    # ------------------------------------------------------------------ targets
    def target_stats(self) -> TargetStats:
        """What the caps need of the standing targets (cached until they change)."""
        if self._nets is None:
            self._nets = TargetStats.of(self.targets)
        return self._nets

    def target_nets(self) -> dict[str, float]:
        """Signed USD target per symbol (strategies summed in sorted order; cached until
        the targets change). Every symbol with a standing target is a key."""
        return self.target_stats().nets

    def target_usd(self, symbol: str) -> float:
        return self.target_nets().get(symbol, 0.0)

    def target_symbols(self) -> set[str]:
        return set(self.target_nets())

    def strategy_shares(self, symbol: str) -> dict[str, float]:
        """Each strategy's share of the symbol's target gross, signed by the side of its
        own target (the absolute shares sum to 1; empty without a target). A strategy
        against the net learns the opposite of the position's outcome."""
        signed = {s: row[symbol] for s, row in sorted(self.targets.items())
                  if row.get(symbol, 0.0) != 0.0}
        total = sum(abs(x) for x in signed.values())
        return {s: x / total for s, x in signed.items()} if total > 0.0 else {}

    def set_targets(self, targets: Contrib, stamped: set[tuple[str, str]], now: int) -> None:
        """Replace the standing targets; pairs in ``stamped`` were set now, the others keep
        their time. Zero targets are dropped, and so are brackets of symbols without one."""
        updated: dict[str, dict[str, int]] = {}
        kept: Contrib = {}
        before = self.updated
        for strat, row in targets.items():
            for sym, usd in row.items():
                if usd == 0.0:
                    continue
                kept.setdefault(strat, {})[sym] = usd
                when = now if (strat, sym) in stamped else before[strat][sym]
                updated.setdefault(strat, {})[sym] = when
        self.targets, self.updated, self._nets = kept, updated, None
        live = self.target_nets()
        if any(s not in live for s in self.brackets):
            self.brackets = {s: b for s, b in self.brackets.items() if s in live}

    def take_batch(self, named: frozenset[tuple[str, str]], batch: Contrib, now: int,
                   dust: float, committed: Contrib | None = None) -> bool:
        """The targets after an incremental allocation: every pair the batch named is
        replaced by the batch's value (set now; below ``dust`` USD, or rejected: 0); the
        others stand with their times — as they are, or as ``committed`` says when the
        limits scaled them. `set_targets` for a batch, without rebuilding what stands.
        Returns whether a non-zero batch pair was dropped as below ``dust``."""
        crumbs = False
        targets = {s: dict(r) for s, r in self.targets.items()}
        updated = {s: dict(r) for s, r in self.updated.items()}
        if committed is not None:
            for strat, row in committed.items():
                targets[strat].update(row)
        for strat, sym in named:
            if strat in targets and targets[strat].pop(sym, None) is not None:
                del updated[strat][sym]
        for strat, row in batch.items():
            for sym, usd in row.items():
                if usd != 0.0 and abs(usd) >= dust:
                    targets.setdefault(strat, {})[sym] = usd
                    updated.setdefault(strat, {})[sym] = now
                elif usd != 0.0:
                    crumbs = True
        for strat in [s for s, r in targets.items() if not r or 0.0 in r.values()]:
            row = targets[strat]
            for sym in [y for y, u in row.items() if u == 0.0]:
                del row[sym], updated[strat][sym]
            if not row:
                del targets[strat], updated[strat]
        self.targets, self.updated, self._nets = targets, updated, None
        live = self.target_nets()
        if any(s not in live for s in self.brackets):
            self.brackets = {s: b for s, b in self.brackets.items() if s in live}
        return crumbs

    def decay_targets(self, now: int, ttl_ns: int) -> list[str]:
        """Drop targets set more than ``ttl_ns`` ago; returns the symbols that lost one."""
        if not self.updated or now - self._oldest <= ttl_ns:
            return []
        stale = [(s, y) for s, row in self.updated.items() for y, t in row.items()
                 if now - t > ttl_ns]
        if not stale:
            self._oldest = min(t for row in self.updated.values() for t in row.values())
            return []
        stale.sort()
        targets = {s: dict(row) for s, row in self.targets.items()}
        for s, y in stale:
            targets[s].pop(y, None)
        self.set_targets(targets, set(), now)
        return sorted({y for _, y in stale})

    # ------------------------------------------------------------------ intents
    def add_intent(self, state: IntentState) -> None:
        self.live.setdefault(state.intent.symbol, []).append(state)
        self.by_cid[state.intent.client_order_id] = state

    def close_intent(self, state: IntentState, status: IntentStatus, now: int) -> None:
        """Move an open intent to the closed ones (kept for late fills, then forgotten)."""
        sym = state.intent.symbol
        rows = [s for s in self.live.get(sym, ()) if s is not state]
        if rows:
            self.live[sym] = rows
        else:
            self.live.pop(sym, None)
        state.status, state.closed_ns = status, now
        self.closed.append(state)
        while len(self.closed) > self.closed_kept:
            gone = self.closed.popleft()
            self.by_cid.pop(gone.intent.client_order_id, None)

    def close_symbol(self, symbol: str, status: IntentStatus, now: int) -> int:
        """Close every open intent of the symbol; returns how many."""
        states = self.live.pop(symbol, None)
        if not states:
            return 0
        for state in states:
            state.status, state.closed_ns = status, now
            self.closed.append(state)
        while len(self.closed) > self.closed_kept:
            self.by_cid.pop(self.closed.popleft().intent.client_order_id, None)
        return len(states)

    def expire_intents(self, now: int) -> int:
        """Close the open intents past their ``expires_at_ns``; returns how many."""
        late = [s for states in self.live.values() for s in states
                if now >= s.intent.expires_at_ns]
        if not late:
            return 0
        late.sort(key=lambda s: (s.intent.symbol, s.intent.client_order_id))
        for state in late:
            self.close_intent(state, IntentStatus.EXPIRED, now)
        return len(late)

    def open_intents(self) -> list[IntentState]:
        return [s for sym in sorted(self.live) for s in self.live[sym]]

    # ------------------------------------------------------------------ fills
    def seen_fill(self, key: str) -> bool:
        return key in self._recent

    def remember_fill(self, key: str) -> None:
        self.recent_fills.append(key)
        self._recent.add(key)
        while len(self.recent_fills) > RECENT_FILLS_KEPT:
            self._recent.discard(self.recent_fills.popleft())

    # ------------------------------------------------------------------ state
    def to_state(self) -> dict[str, Any]:
        return {
            "capital": self.capital, "cash": self.cash, "marks": dict(self.marks),
            "positions": {s: p.to_state() for s, p in sorted(self.positions.items())},
            # (copies: a snapshot is encoded while requests go on)
            "targets": {s: dict(r) for s, r in self.targets.items()},
            "updated": {s: dict(r) for s, r in self.updated.items()},
            "brackets": {s: list(b) for s, b in sorted(self.brackets.items())},
            "live": [s.to_state() for s in self.open_intents()],
            "closed": [s.to_state() for s in self.closed],
            "recent_fills": list(self.recent_fills),
            "last_reconcile_ns": self.last_reconcile_ns,
            "trading_state": self.trading.export_state(), "paths": dict(self.paths),
            "fills_applied": self.fills_applied, "reconciles": self.reconciles,
        }

    @classmethod
    def from_state(cls, name: str, state: dict[str, Any], closed_kept: int,
                   trading: TradingStateMachine | None = None) -> PortfolioBook:
        """``trading``: the machine to restore the portfolio's trading state into (a
        state written before trading states existed is a fresh ACTIVE one)."""
        pb = cls(name, float(state["capital"]), closed_kept, trading)
        pb.cash = float(state["cash"])
        pb.marks = {str(k): float(v) for k, v in state["marks"].items()}
        pb.positions = {s: Position.from_state(s, v) for s, v in state["positions"].items()}
        pb.targets = {s: {y: float(u) for y, u in row.items()}
                      for s, row in state["targets"].items()}
        pb.updated = {s: {y: int(t) for y, t in row.items()}
                      for s, row in state["updated"].items()}
        pb.brackets = {s: (b[0], b[1]) for s, b in state["brackets"].items()}
        for raw in state["live"]:
            pb.add_intent(IntentState.from_state(raw))
        for raw in state["closed"]:
            closed = IntentState.from_state(raw)
            pb.closed.append(closed)
            pb.by_cid[closed.intent.client_order_id] = closed
        while len(pb.closed) > closed_kept:  # restored under a smaller restart-only bound
            pb.by_cid.pop(pb.closed.popleft().intent.client_order_id, None)
        for key in state["recent_fills"]:
            pb.remember_fill(str(key))
        pb.last_reconcile_ns = int(state["last_reconcile_ns"])
        if isinstance(state["trading_state"], dict):
            pb.trading.restore_state(state["trading_state"])
        pb.paths = {str(k): str(v) for k, v in state.get("paths", {}).items()}
        pb.fills_applied = int(state["fills_applied"])
        pb.reconciles = int(state["reconciles"])
        return pb
