r"""From standing targets to order intents, with the limits checked on the projected book.

After every change to a portfolio (an allocation, fills, a reconcile, new prices, a config
change) the book re-plans each symbol it has a target, a position or an open intent for:

1. **plan** (``force`` off): per symbol the wanted change is
   :math:`\Delta = T/p - (q + L)` (target quantity minus position minus open intents).
   Within the no-trade band (:math:`|\Delta| p <` ``band``) the open intents stand (an exit,
   :math:`T = 0`, is never held back by the band). Otherwise the symbol's open intents are
   superseded and new legs take the position from :math:`q` to :math:`T/p`
   (``intents.plan_legs``: increases rounded toward zero, reductions away from zero);
2. **check** the projected book (position + open intents at the marks,
   ``exposure.breaches``). The band may leave a symbol a little past its target; if that
   breaches a limit:
3. **forced** plan: the band may not hold back a symbol that is not within its target (same
   sign, no larger): every such symbol is brought within it, which satisfies every limit
   the targets satisfy except the net (a long leg dropped below the minimum notional leaves
   the shorts uncovered, say). Targets sit
   ``settings.LIMIT_HEADROOM`` inside the caps, so a fee or a small price move does not make
   a position held at its cap breach it (and trade a crumb to repair it);
4. **net repair**: the dominant side is scaled down (reductions only) until the net fits;
5. **flatten**: if anything still breaches, close everything. It never has in the tests;
   it is there so that no sequence of requests can leave the book outside its limits.

The repairs are counted (``himari_l3_book_repairs_total{stage}``).

**Trading states.** A symbol whose state (the more severe of its own and the portfolio's,
``book/trading.py``) is not ACTIVE plans toward the target that state allows
(``trading.gate.allowed_target``: REDUCING toward zero and never past it, HALTED to zero or,
under ``freeze``, to the position as it is), and its open intents are superseded whenever
position plus open intents is not such a target — so no intent adds exposure, and every
leg issued is a reduce-only reduction or close.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

from ..portfolio.headroom import linear_room
from ..trading import TradingState, allowed_target
from .exposure import TOLERANCE, any_breach
from .intents import (
    DroppedIntent,
    IntentCause,
    IntentState,
    IntentStatus,
    Leg,
    OrderIntent,
    client_order_id,
    plan_legs,
)
from .markets import MarketRules, Markets
from .portfolio import PortfolioBook
from .settings import BookSettings
from .trading import Restrictions

__all__ = ["StepResult", "rebalance"]

_new = tuple.__new__  # intents from checked numbers, without the constructor's checks


class _SymbolPlan(NamedTuple):
    legs: tuple[Leg, ...]
    dropped: tuple[DroppedIntent, ...]
    projected_qty: float


@dataclass
class _Plan:
    symbols: dict[str, _SymbolPlan] = field(default_factory=dict)  # replanned ones only
    kept_dropped: list[DroppedIntent] = field(default_factory=list)
    projected: dict[str, float] = field(default_factory=dict)  # signed USD
    # Every symbol's projected quantity is within its target (same side, no larger): then
    # every limit the targets obey holds but the net, and only the net needs checking.
    all_within: bool = True


@dataclass
class StepResult:
    """What one rebalance did: intents issued, orders dropped (with why), intents
    superseded, and the repair stage it needed (None: the plan complied)."""

    issued: list[OrderIntent] = field(default_factory=list)
    dropped: list[DroppedIntent] = field(default_factory=list)
    superseded: int = 0
    repair: str | None = None


_ACTIVE = TradingState.ACTIVE


def _symbols(pb: PortfolioBook) -> list[str]:
    held = {s for s, p in pb.positions.items() if p.quantity != 0.0}
    return sorted(pb.target_symbols() | held | pb.live.keys())


def _within(projected: float, tau: float) -> bool:
    """The projected quantity is on the target's side and no larger (or flat)."""
    return projected == 0.0 or (projected * tau > 0.0 and abs(projected) <= abs(tau))


def _plan(pb: PortfolioBook, settings: BookSettings, markets: Markets, equity: float, *,
          force: bool, taus: dict[str, float] | None = None,
          gate: Restrictions | None = None) -> _Plan:
    band = settings.band(equity)
    plan = _Plan()
    nets, marks, positions, live_states = pb.target_nets(), pb.marks, pb.positions, pb.live
    for sym in _symbols(pb):
        price = marks[sym]
        pos = positions.get(sym)
        q = pos.quantity if pos is not None else 0.0
        now_qty = q + pb.live_qty(sym) if sym in live_states else q
        tau = taus[sym] if taus is not None and sym in taus else nets.get(sym, 0.0) / price
        must = False
        if gate is not None:
            state = gate.state(sym)
            if state is not _ACTIVE:
                tau = allowed_target(state, q, tau, gate.halt_action)
                # Open intents that would take it where the state does not allow: replaced.
                must = allowed_target(state, q, now_qty, gate.halt_action) != now_qty
        change = tau - now_qty
        keep = change == 0.0 or (abs(change) * price < band and not (tau == 0.0 and now_qty))
        if keep and (must or (force and not _within(now_qty, tau))):
            keep = False  # forced: the band may not leave it beyond its target
        if keep:
            # Reported when it is an order someone could want: a tenth of the band or more
            # (not the float dust a fill's price leaves between a target and its position).
            if change != 0.0 and abs(change) * price >= 0.1 * band and sym not in live_states:
                plan.kept_dropped.append(DroppedIntent(sym, "buy" if change > 0 else "sell",
                                                       abs(change), "no_trade_band"))
            after = now_qty
        else:
            legs, dropped = plan_legs(sym, q, tau, price, markets.rules(sym))
            after = q
            for leg in legs:
                after += leg.quantity if leg.side == "buy" else -leg.quantity
            plan.symbols[sym] = _SymbolPlan(tuple(legs), tuple(dropped), after)
        if after != 0.0:
            plan.projected[sym] = after * price
            if plan.all_within and not (after * tau > 0.0 and abs(after) <= abs(tau)):
                plan.all_within = False
    return plan


def _net_taus(pb: PortfolioBook, plan: _Plan, equity: float,
              settings: BookSettings) -> dict[str, float] | None:
    """Target quantities that scale the dominant side down until the net fits."""
    total = sum(plan.projected.values())
    side = 1.0 if total > 0.0 else -1.0
    major = sum(x for x in plan.projected.values() if x * side > 0.0)
    minor = total - major
    cap = settings.caps.net * max(equity, 0.0)
    if major == 0.0:
        return None
    # Within reach: the largest scale that fits; else the centre of the feasible range
    # (net 0), which leaves room for rounding on both sides.
    g = linear_room(minor, major, cap) if abs(minor) <= cap else -minor / major
    return {sym: g * x / pb.marks[sym] for sym, x in plan.projected.items() if x * side > 0.0}


def _breached(pb: PortfolioBook, plan: _Plan, equity: float, settings: BookSettings) -> bool:
    if plan.all_within and equity > 0.0:  # the targets obey the caps: only the net to check
        net = abs(sum(plan.projected.values()))
        return net > settings.caps.net * equity * (1.0 + TOLERANCE) + TOLERANCE
    return any_breach(plan.projected, pb.targets, equity, settings.caps, pb.target_stats())


def _choose(pb: PortfolioBook, settings: BookSettings, markets: Markets,
            equity: float, gated: bool) -> tuple[_Plan, str | None]:
    gate = (None if not gated or pb.trading.all_active()
            else Restrictions(pb.trading))
    plan = _plan(pb, settings, markets, equity, force=False, gate=gate)
    if not _breached(pb, plan, equity, settings):
        return plan, None
    plan = _plan(pb, settings, markets, equity, force=True, gate=gate)
    if not _breached(pb, plan, equity, settings):
        return plan, "forced"
    taus = _net_taus(pb, plan, equity, settings)
    if taus is not None:
        plan = _plan(pb, settings, markets, equity, force=True, taus=taus, gate=gate)
        if not _breached(pb, plan, equity, settings):
            return plan, "net"
    flat = dict.fromkeys(_symbols(pb), 0.0)
    return _plan(pb, settings, markets, equity, force=True, taus=flat), "flatten"


def _prices(rules: MarketRules | None, pb: PortfolioBook, sym: str, leg: Leg,
            settings: BookSettings) -> tuple[float | None, float | None, float | None]:
    """(limit price, stop-loss, take-profit) of a leg, on the tick grid. Brackets go on
    orders that open or add (an exit needs none); each rounds toward the entry, so it
    never sits further away than the decision asked."""
    if leg.reduce_only and settings.order_type == "market":
        return None, None, None  # an exit: no limit price, no brackets
    price = pb.marks[sym]
    buy = leg.side == "buy"
    limit = None
    if settings.order_type == "limit":
        # Decimal: 50,000 x 1.001 is 50,049.99999999999 in binary, a tick too low.
        off = Decimal(repr(settings.limit_offset))
        raw = float(Decimal(repr(price)) * (1 + off if buy else 1 - off))
        limit = rules.round_price(raw, up=not buy) if rules else raw
    sl, tp = (None, None) if leg.reduce_only else pb.brackets.get(sym, (None, None))
    if rules is not None:
        sl = rules.round_price(sl, up=buy) if sl is not None else None
        tp = rules.round_price(tp, up=not buy) if tp is not None else None
    return limit, sl, tp


def _issue(pb: PortfolioBook, sym: str, plan: tuple[tuple[Leg, ...], list[str]], *,
           settings: BookSettings, markets: Markets, decision_id: int, cause: IntentCause,
           now: int) -> list[OrderIntent]:
    legs, cids = plan
    out = []
    rules = markets.rules(sym)
    price = pb.marks[sym]
    expires = now + settings.intent_ttl_ns
    for i, (leg, cid) in enumerate(zip(legs, cids, strict=True)):
        limit, sl, tp = _prices(rules, pb, sym, leg, settings)
        intent = _new(OrderIntent, (
            f"{pb.name}|{decision_id}|{sym}|{i}", cid, pb.name, sym, leg.side, leg.quantity,
            settings.order_type, limit, leg.reduce_only, settings.time_in_force, sl, tp,
            leg.reason, cause, decision_id, price, leg.quantity * price, now, expires))
        pb.add_intent(IntentState(intent))
        out.append(intent)
    return out


def rebalance(pb: PortfolioBook, settings: BookSettings, markets: Markets, now: int,
              decision_id: int, cause: IntentCause, *, gated: bool = True) -> StepResult:
    """Plan, check and repair (module docstring), then supersede and issue (``gated``
    False: the trading states are not asked)."""
    equity = pb.equity()
    plan, repair = _choose(pb, settings, markets, equity, gated)
    cids = {sym: [client_order_id(pb.name, decision_id, sym, i) for i in range(len(sp.legs))]
            for sym, sp in plan.symbols.items()}
    for sym, ids in cids.items():  # refuse before anything changes
        if any(cid in pb.by_cid for cid in ids):
            raise ValueError(f"decision_id {decision_id} was already used for {sym} in "
                             f"portfolio {pb.name!r}: decision ids must be unique")
    result = StepResult(dropped=list(plan.kept_dropped), repair=repair)
    if repair is not None:
        cause = IntentCause.LIMIT_REPAIR
    for sym, sp in plan.symbols.items():
        result.superseded += pb.close_symbol(sym, IntentStatus.SUPERSEDED, now)
        result.dropped.extend(sp.dropped)
        result.issued.extend(_issue(pb, sym, (sp.legs, cids[sym]), settings=settings,
                                    markets=markets, decision_id=decision_id, cause=cause,
                                    now=now))
    return result
