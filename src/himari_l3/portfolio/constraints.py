r"""Phase 2's symbol constraints as objects with one contract: ``apply(context) -> result``.

Contributions are signed USD, ``contrib[strategy][symbol]``; every constraint only ever
*multiplies* them by factors in [0, 1], so none can flip a direction or grow an exposure.
Two declared lists (in `himari_l3.phase2`):

* **adjustments**, applied once when a batch is prepared (before any RL blend):
  `CorrelationAdjustment` (pairwise penalty and multi-asset Kelly, ``budgets.py``);
* **limits**, applied to the baseline and again after any RL blend, in this order
  (`declared_limits`): `SymbolBoundLimit` (cascade EXIT, direction rules, per-symbol cap
  on the net), `StrategyBudget`, `PositionBudget`, `PortfolioBudget`, `NetBudget`,
  `LeverageBudget` (docs/sizing-math.md §8).

Each limit scales what exceeds it proportionally, names itself in the binding limit of the
symbols it cut (the tightest factor wins), and reports its factors for the trace. A new
whole-book limit is a class here and one entry in the list (ARCHITECTURE.md).

**Commitments** (the book, ``himari_l3.book``): a context may carry standing targets that
the batch does not touch (``LimitContext.committed``). Every limit then holds over
commitments plus batch: the batch gets what the limit leaves after the commitments
(``headroom.py``); commitments that breach a limit on their own (a limit lowered, equity
fallen) are scaled to fit first, and the batch gets nothing of that limit. A cascade EXIT
zeroes the symbol's commitments too. Without commitments (Phase 2 alone) every limit takes
exactly the arithmetic it always took.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from ..contracts import CascadeRecommendation
from ..trace import LimitName
from .budgets import BudgetResult, Contrib, correlation_multipliers, nets
from .headroom import CRUMB, gross_room, linear_room

if TYPE_CHECKING:
    from ..config.schema import PortfolioConfig
    from ..contracts import PositionSizingDecision, TacticalSignal
    from .correlation import CorrelationMonitor

__all__ = [
    "CombinedCaps",
    "ConstraintResult",
    "CorrelationAdjustment",
    "CorrelationResult",
    "LeverageBudget",
    "LimitContext",
    "NetBudget",
    "PortfolioBudget",
    "PortfolioLimit",
    "PositionBudget",
    "StrategyBudget",
    "SymbolBoundLimit",
    "SymbolBounds",
    "declared_limits",
    "run_limits",
    "symbol_bounds",
]

# Scale factors are nudged down by a few ulps so that rounding never leaves a total a hair
# above its cap.
_SAFETY = 1.0 - 1e-12
_new = tuple.__new__  # immutable records without the constructor call (hot path)


@dataclass(frozen=True, slots=True)
class SymbolBounds:
    """What the limits allow for one symbol in this batch (re-applied after any RL blend)."""

    max_long_usd: float
    max_short_usd: float
    cascade_multiplier: float
    exit: bool


def symbol_bounds(decisions: Sequence[PositionSizingDecision], cap: float,
                  allow_short: bool) -> dict[str, SymbolBounds]:
    """Per symbol: EXIT if any strategy's readings say so, the tightest cascade keep-factor,
    and how far long/short the net may go (a side nobody asked for stays at what is held)."""
    # symbol -> [exit, cascade keep-factor, long asked, short asked, held long, held short]
    acc: dict[str, list[Any]] = {}
    for d in decisions:
        a = acc.get(d.symbol)
        if a is None:
            a = acc[d.symbol] = [False, 1.0, False, False, 0.0, 0.0]
        if d.cascade_recommendation is CascadeRecommendation.EXIT:
            a[0] = True
        a[1] = min(a[1], d.trace.stages[4].multiplier)  # the cascade stage's keep-factor
        direction = d.action.direction
        if direction > 0:
            a[2] = True
        elif direction < 0:
            a[3] = True
        elif d.position_size_usd > 0.0:
            a[4] += d.position_size_usd
        else:
            a[5] -= d.position_size_usd
    out: dict[str, SymbolBounds] = {}
    for sym, (exit_, mult, long_ok, short_ok, held_long, held_short) in acc.items():
        max_long = 0.0 if exit_ else (cap if long_ok else min(cap, held_long))
        max_short = (0.0 if exit_ else
                     (cap if allow_short and short_ok else min(cap, held_short)))
        out[sym] = SymbolBounds(max_long, max_short, mult, exit_)
    return out


class ConstraintResult(NamedTuple):
    """One limit's entry in the trace: the factors it applied (by strategy, symbol or
    "all") and the symbols it cut."""

    name: LimitName
    factors: dict[str, float]
    bound: tuple[str, ...]


class LimitContext:
    """One pass of the limits over a batch's contributions (mutated in place), beside the
    commitments ``committed`` (standing targets the batch does not touch; empty for Phase 2
    alone). ``committed_factors[limit][key]`` records how a limit scaled commitments."""

    __slots__ = ("_all", "_held", "bounds", "committed", "committed_factors", "contrib",
                 "position_cap_usd", "pv", "symbols", "tight")

    def __init__(self, contrib: Contrib, symbols: list[str], pv: float,
                 bounds: dict[str, SymbolBounds], position_cap_usd: float,
                 committed: Contrib | None = None) -> None:
        self.contrib = {s: dict(row) for s, row in contrib.items()}
        self.symbols = symbols
        self.pv = pv
        self.bounds = bounds
        self.position_cap_usd = position_cap_usd
        self.tight: dict[str, tuple[LimitName, float]] = {}
        self.committed: Contrib = ({s: dict(row) for s, row in committed.items() if row}
                                   if committed else {})
        self.committed_factors: dict[str, dict[str, float]] = {}
        self._all: list[str] | None = None
        self._held: dict[str, float] | None = None

    def bind(self, symbol: str, limit: LimitName, factor: float) -> None:
        """Record that ``limit`` cut ``symbol`` by ``factor`` (the tightest one is named)."""
        if factor < self.tight.get(symbol, (LimitName.NONE, 1.0))[1]:
            self.tight[symbol] = (limit, factor)

    def all_symbols(self) -> list[str]:
        """The batch's symbols and the commitments' (sorted: deterministic)."""
        if self._all is None:
            self._all = sorted({*self.symbols,
                                *(y for row in self.committed.values() for y in row)})
        return self._all

    def held_nets(self) -> dict[str, float]:
        """The commitments' net per symbol (of `all_symbols`; kept until they are scaled)."""
        if self._held is None:
            self._held = nets(self.committed, self.all_symbols())
        return self._held

    def scale_committed(self, limit: LimitName, key: str, factor: float,
                        strategy: str | None = None, symbol: str | None = None) -> None:
        """Scale commitments (of one strategy, one symbol, or all) by ``factor``."""
        self.committed_factors.setdefault(limit.value, {})[key] = factor
        self._held = None
        for strat, row in self.committed.items():
            if strategy is not None and strat != strategy:
                continue
            for sym in row:
                if symbol is None or sym == symbol:
                    row[sym] *= factor


class PortfolioLimit(Protocol):
    """The contract of every Phase 2 limit (checked by one contract test over all)."""

    name: LimitName

    def apply(self, ctx: LimitContext) -> ConstraintResult:
        """Scale ``ctx.contrib`` in place so the limit holds; return the trace entry."""
        ...


class SymbolBoundLimit:
    """Each symbol's net within its bounds: 0 under a cascade EXIT, no side nobody asked
    for, at most the per-position cap."""

    name = LimitName.DIRECTION

    def apply(self, ctx: LimitContext) -> ConstraintResult:
        net = nets(ctx.contrib, ctx.symbols)
        factors: dict[str, float] = {}
        for row in ctx.contrib.values():
            for sym, usd in row.items():
                b = ctx.bounds[sym]
                n = net[sym]
                f = 1.0
                bound = math.inf
                if n > b.max_long_usd:
                    f, bound = b.max_long_usd / n, b.max_long_usd
                elif -n > b.max_short_usd:
                    f, bound = b.max_short_usd / -n, b.max_short_usd
                if f < 1.0:
                    # A bound equal to the per-position cap is the position budget binding.
                    name = (LimitName.EXIT if b.exit else
                            LimitName.POSITION if bound >= ctx.position_cap_usd
                            else LimitName.DIRECTION)
                    ctx.tight[sym] = (name, f)
                    factors[sym] = f
                row[sym] = usd * f if f > 0.0 else 0.0
        if ctx.committed:
            for sym in ctx.symbols:
                if ctx.bounds[sym].exit:  # the market says get out: whoever holds it
                    ctx.scale_committed(LimitName.EXIT, sym, 0.0, symbol=sym)
        return _new(ConstraintResult, (self.name, factors, tuple(factors)))


class StrategyBudget:
    """A strategy whose gross exceeds ``max_strategy_pct`` x PV is scaled as a whole (the
    batch gets what the strategy's commitments leave)."""

    name = LimitName.STRATEGY

    def __init__(self, max_strategy_pct: float) -> None:
        self.max_strategy_pct = max_strategy_pct

    def apply(self, ctx: LimitContext) -> ConstraintResult:
        factors: dict[str, float] = {}
        bound: dict[str, None] = {}  # an ordered set (deterministic trace)
        cap = self.max_strategy_pct * ctx.pv
        c = ctx.contrib
        held_by = ctx.committed
        for strat in sorted(c.keys() | held_by.keys()) if held_by else sorted(c):
            row = c.get(strat, {})
            gross = sum((abs(x) for x in row.values()), 0.0)
            held = 0.0
            if strat in held_by:
                held = sum((abs(x) for x in held_by[strat].values()), 0.0)
                if held > cap:  # its commitments alone breach: scale them, no room left
                    ctx.scale_committed(self.name, strat, cap / held * _SAFETY, strategy=strat)
                    held = cap
            if held + gross > cap:
                room = cap - held
                f = 0.0 if room <= CRUMB * cap else room / gross * _SAFETY
                factors[strat] = f
                for sym in row:
                    row[sym] *= f
                    if row[sym] != 0.0 or f == 0.0:
                        ctx.bind(sym, LimitName.STRATEGY, f)
                        bound[sym] = None
        return _new(ConstraintResult, (self.name, factors, tuple(bound)))


class PositionBudget:
    """A symbol whose net (strategies summed, commitments included) exceeds
    ``max_position_pct`` x PV is scaled."""

    name = LimitName.POSITION

    def __init__(self, max_position_pct: float) -> None:
        self.max_position_pct = max_position_pct

    def apply(self, ctx: LimitContext) -> ConstraintResult:
        factors: dict[str, float] = {}
        cap = self.max_position_pct * ctx.pv
        c = ctx.contrib
        if ctx.committed:
            return self._beside_commitments(ctx, cap)
        for sym, net in nets(c, ctx.symbols).items():
            if abs(net) > cap:
                f = cap / abs(net) * _SAFETY
                factors[sym] = f
                ctx.bind(sym, LimitName.POSITION, f)
                for strat in c:
                    if sym in c[strat]:
                        c[strat][sym] *= f
        return _new(ConstraintResult, (self.name, factors, tuple(factors)))

    def _beside_commitments(self, ctx: LimitContext, cap: float) -> ConstraintResult:
        factors: dict[str, float] = {}
        symbols = ctx.all_symbols()
        held = dict(ctx.held_nets())
        batch = nets(ctx.contrib, symbols)
        for sym in symbols:
            h = held[sym]
            if abs(h) > cap:
                ctx.scale_committed(self.name, sym, cap / abs(h) * _SAFETY, symbol=sym)
                h *= cap / abs(h) * _SAFETY
            n = batch[sym]
            if n != 0.0 and abs(h + n) > cap:
                f = linear_room(h, n, cap) * _SAFETY
                factors[sym] = f
                ctx.bind(sym, LimitName.POSITION, f)
                for row in ctx.contrib.values():
                    if sym in row:
                        row[sym] *= f
        return _new(ConstraintResult, (self.name, factors, tuple(factors)))


class PortfolioBudget:
    """If the gross of the nets (commitments included) exceeds ``max_portfolio_pct`` x PV,
    the batch is scaled by one factor (commitments first, if they breach it alone)."""

    name = LimitName.PORTFOLIO

    def __init__(self, max_portfolio_pct: float) -> None:
        self.max_portfolio_pct = max_portfolio_pct

    def apply(self, ctx: LimitContext) -> ConstraintResult:
        c = ctx.contrib
        cap = self.max_portfolio_pct * ctx.pv
        if ctx.committed:
            return self._beside_commitments(ctx, cap)
        gross = sum((abs(x) for x in nets(c, ctx.symbols).values()), 0.0)
        if gross <= cap:
            return _new(ConstraintResult, (self.name, {}, ()))
        f = cap / gross * _SAFETY
        for strat in c:
            for sym in c[strat]:
                c[strat][sym] *= f
        bound = tuple(sym for sym, net in nets(c, ctx.symbols).items() if net != 0.0)
        for sym in bound:
            ctx.bind(sym, self.name, f)
        return _new(ConstraintResult, (self.name, {"all": f}, bound))

    def _beside_commitments(self, ctx: LimitContext, cap: float) -> ConstraintResult:
        symbols = ctx.all_symbols()
        held = ctx.held_nets()
        held_gross = sum((abs(x) for x in held.values()), 0.0)
        if held_gross > cap:
            ctx.scale_committed(self.name, "all", cap / held_gross * _SAFETY)
            held = ctx.held_nets()
        batch = nets(ctx.contrib, symbols)
        if sum((abs(held[s] + batch[s]) for s in symbols), 0.0) <= cap:
            return _new(ConstraintResult, (self.name, {}, ()))
        f = gross_room([held[s] for s in symbols], [batch[s] for s in symbols], cap)
        if f >= 1.0:
            return _new(ConstraintResult, (self.name, {}, ()))
        return _scale_batch(ctx, self.name, f * _SAFETY, batch)


class NetBudget:
    """If the net of all symbols (longs minus shorts, commitments included) exceeds
    ``max_net_pct`` x PV in either direction, the batch is scaled by one factor.

    ``gross_cap_pct``: the tightest gross cap applied before it. The net never exceeds the
    gross, so a net cap at or above it cannot bind, and the pass is skipped."""

    name = LimitName.NET

    def __init__(self, max_net_pct: float, gross_cap_pct: float = 1.0) -> None:
        self.max_net_pct = max_net_pct
        self.inert = max_net_pct >= gross_cap_pct

    def apply(self, ctx: LimitContext) -> ConstraintResult:
        if self.inert:
            return _new(ConstraintResult, (self.name, {}, ()))
        cap = self.max_net_pct * ctx.pv
        symbols = ctx.all_symbols() if ctx.committed else ctx.symbols
        held = sum(ctx.held_nets().values(), 0.0) if ctx.committed else 0.0
        if abs(held) > cap:
            ctx.scale_committed(self.name, "all", cap / abs(held) * _SAFETY)
            held *= cap / abs(held) * _SAFETY
        batch = nets(ctx.contrib, symbols)
        total = sum(batch.values(), 0.0)
        if abs(held + total) <= cap:
            return _new(ConstraintResult, (self.name, {}, ()))
        return _scale_batch(ctx, self.name, linear_room(held, total, cap) * _SAFETY, batch)


class LeverageBudget(PortfolioBudget):
    """Gross exposure over equity at most ``max_leverage`` (the book's hard cap; it binds
    only where it is tighter than the gross budget ``max_portfolio_pct``, applied before
    it: otherwise the pass is skipped)."""

    name = LimitName.LEVERAGE

    def __init__(self, max_leverage: float, gross_cap_pct: float = math.inf) -> None:
        super().__init__(max_leverage)
        self.max_leverage = max_leverage
        self.inert = max_leverage >= gross_cap_pct

    def apply(self, ctx: LimitContext) -> ConstraintResult:
        if self.inert:
            return _new(ConstraintResult, (self.name, {}, ()))
        return super().apply(ctx)


class CombinedCaps:
    """The last pass, beside the book's commitments: the gross (``max_portfolio_pct``,
    ``max_leverage``) and the net caps over commitments plus batch together.

    The passes before it scale the commitments or the batch on their own; where a batch
    position offsets a commitment on the same symbol, scaling one of them (the net cap
    cutting commitments that breach it alone, say) undoes the netting and can push the
    gross of the nets back over a cap an earlier pass enforced. Scaling commitments and
    batch by one factor scales every net by it, so every cap — position, strategy, gross,
    net, leverage — holds after this pass whatever the passes before it did."""

    name = LimitName.COMBINED

    def __init__(self, gross_cap_pct: float, net_cap_pct: float) -> None:
        self.gross_cap_pct = gross_cap_pct
        self.net_cap_pct = net_cap_pct

    def apply(self, ctx: LimitContext) -> ConstraintResult:
        if not ctx.committed:
            return _new(ConstraintResult, (self.name, {}, ()))
        symbols = ctx.all_symbols()
        held = ctx.held_nets()
        batch = nets(ctx.contrib, symbols)
        combined = [held[s] + batch[s] for s in symbols]
        gross, net = sum(abs(x) for x in combined), abs(sum(combined))
        f = 1.0
        if gross > self.gross_cap_pct * ctx.pv:
            f = self.gross_cap_pct * ctx.pv / gross
        if net > self.net_cap_pct * ctx.pv:
            f = min(f, self.net_cap_pct * ctx.pv / net)
        if f >= 1.0:
            return _new(ConstraintResult, (self.name, {}, ()))
        f *= _SAFETY
        ctx.scale_committed(self.name, "all", f)
        return _scale_batch(ctx, self.name, f, batch)


def _scale_batch(ctx: LimitContext, name: LimitName, f: float,
                 before: dict[str, float]) -> ConstraintResult:
    """Scale every batch contribution by ``f``; bind the symbols that had a net."""
    for row in ctx.contrib.values():
        for sym in row:
            row[sym] *= f
    bound = tuple(sym for sym, net in before.items() if net != 0.0)
    for sym in bound:
        ctx.bind(sym, name, f)
    return _new(ConstraintResult, (name, {"all": f}, bound))


def declared_limits(cfg: PortfolioConfig) -> list[PortfolioLimit]:
    """The limits in the order they apply (Phase 2, Phase 3 after a blend, and the book)."""
    gross = min(cfg.max_portfolio_pct, cfg.max_leverage)
    return [SymbolBoundLimit(), StrategyBudget(cfg.max_strategy_pct),
            PositionBudget(cfg.max_position_pct), PortfolioBudget(cfg.max_portfolio_pct),
            LeverageBudget(cfg.max_leverage, cfg.max_portfolio_pct),
            NetBudget(cfg.max_net_pct, gross), CombinedCaps(gross, cfg.max_net_pct)]


_BUDGETS = frozenset({LimitName.STRATEGY, LimitName.POSITION, LimitName.PORTFOLIO})
_CAPS = frozenset({LimitName.NET, LimitName.LEVERAGE, LimitName.COMBINED})


def run_limits(limits: Sequence[PortfolioLimit], contrib: Contrib, symbols: list[str],
               pv: float, bounds: dict[str, SymbolBounds], position_cap_usd: float,
               committed: Contrib | None = None) -> BudgetResult:
    """Apply ``limits`` in order to a copy of ``contrib`` (pure: nothing else changes),
    beside ``committed`` (copied too; the result carries them as the limits left them).

    Commitments are settled first, by every limit over the commitments alone (a zero
    batch); only then does the batch get what they leave. In one interleaved pass a later
    limit that scaled a commitment down could break an earlier limit the batch had just
    been fitted to: a commitment that offsets the batch on a symbol, shrunk, *raises* that
    symbol's net and the gross. Once the commitments fit every limit, each limit's room for
    the batch is an interval of factors (the measures are convex in the batch factor), so
    the later limits' scalings keep the earlier ones true."""
    committed_factors: dict[str, dict[str, float]] = {}
    if committed:
        settle = LimitContext({s: dict.fromkeys(row, 0.0) for s, row in contrib.items()},
                              symbols, pv, bounds, position_cap_usd, committed)
        for limit in limits:
            limit.apply(settle)
        committed, committed_factors = settle.committed, settle.committed_factors
    ctx = LimitContext(contrib, symbols, pv, bounds, position_cap_usd, committed)
    results = [limit.apply(ctx) for limit in limits]
    for name, keyed in ctx.committed_factors.items():  # none, unless rounding: kept
        committed_factors.setdefault(name, {}).update(keyed)
    ctx.committed_factors = committed_factors
    # The three budgets always report (an empty dict when they did not bind); the newer
    # caps only when they bound, so that a Phase 2 trace reads as it did before them.
    factors = {r.name.value: r.factors for r in results
               if r.name in _BUDGETS or (r.name in _CAPS and r.factors)}
    tight = ctx.tight
    # LimitName members are strings ("position", ...): the binding map holds them as such.
    binding: dict[str, str] = {sym: (tight[sym][0] if sym in tight else LimitName.NONE)
                               for sym in symbols}
    return BudgetResult(ctx.contrib, factors, binding, ctx.committed, ctx.committed_factors)


class CorrelationResult(NamedTuple):
    """Per symbol: the multiplier for correlated exposure, the pairwise penalty, the
    fraction removed; and what the multi-asset Kelly did."""

    multipliers: dict[str, float]
    penalties: dict[str, float]
    removed: dict[str, float]
    note: str


class CorrelationAdjustment:
    """Correlated same-direction exposure is penalised; the multi-asset Kelly
    :math:`f = \\Sigma^{-1}\\mu` caps each symbol at what the joint solution keeps
    (``budgets.correlation_multipliers``; docs/sizing-math.md §8)."""

    def __init__(self, monitor: CorrelationMonitor, max_correlation: float,
                 penalty_strength: float, use_multi_asset_kelly: bool) -> None:
        self.monitor = monitor
        self.max_correlation = max_correlation
        self.penalty_strength = penalty_strength
        self.use_multi_asset_kelly = use_multi_asset_kelly

    def apply(self, net: dict[str, float], symbols: list[str],
              by_symbol: dict[str, list[TacticalSignal]]) -> CorrelationResult:
        live = [s for s in symbols if net[s] != 0.0]
        none = dict.fromkeys(symbols, 0.0)
        if len(live) < 2:
            return CorrelationResult(dict.fromkeys(symbols, 1.0), none, none,
                                     "not applicable: fewer than two positions")
        _, shrinkage, _ = self.monitor.correlation(symbols)
        if shrinkage >= 1.0:
            # The identity: no pair is correlated and the joint Kelly equals the single one.
            return CorrelationResult(dict.fromkeys(symbols, 1.0), none, none,
                                     "not applicable: no correlation evidence yet "
                                     "(shrinkage 1)")
        edge, vol = self._edges_and_volatilities(net, symbols, by_symbol)
        mult, penalty, note = correlation_multipliers(
            net, self.monitor.matrix_rows(symbols), symbols, edge, vol, self.max_correlation,
            self.penalty_strength,
            self.monitor.inverse if self.use_multi_asset_kelly else None)
        return CorrelationResult(mult, penalty, {s: 1.0 - mult[s] for s in symbols}, note)

    def _edges_and_volatilities(
        self, net: dict[str, float], symbols: list[str],
        by_symbol: dict[str, list[TacticalSignal]],
    ) -> tuple[dict[str, float], dict[str, float | None]]:
        """Per symbol, the mean expected return and volatility of the signals on the net's
        side (NaN edge if none says; the monitor's realised volatility if none says)."""
        edge: dict[str, float] = {}
        vol: dict[str, float | None] = {}
        for sym in symbols:
            sigs = [s for s in by_symbol[sym] if s.action.direction * net[sym] > 0]
            ers = [s.expected_return for s in sigs if s.expected_return is not None]
            vols = [s.predicted_volatility for s in sigs if s.predicted_volatility is not None]
            edge[sym] = sum(ers, 0.0) / len(ers) if ers else math.nan
            vol[sym] = sum(vols, 0.0) / len(vols) if vols else self.monitor.volatility(sym)
        return edge, vol
