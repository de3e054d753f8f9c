r"""Phase 2's symbol constraints as objects with one contract: ``apply(context) -> result``.

Contributions are signed USD, ``contrib[strategy][symbol]``; every constraint only ever
*multiplies* them by factors in [0, 1], so none can flip a direction or grow an exposure.
Two declared lists (in `himari_l3.phase2`):

* **adjustments**, applied once when a batch is prepared (before any RL blend):
  `CorrelationAdjustment` (pairwise penalty and multi-asset Kelly, ``budgets.py``);
* **limits**, applied to the baseline and again after any RL blend, in this order:
  `SymbolBoundLimit` (cascade EXIT, direction rules, per-symbol cap on the net),
  `StrategyBudget`, `PositionBudget`, `PortfolioBudget` (docs/sizing-math.md §8).

Each limit scales what exceeds it proportionally, names itself in the binding limit of the
symbols it cut (the tightest factor wins), and reports its factors for the trace. A new
whole-book limit is a class here and one entry in the list (ARCHITECTURE.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from ..contracts import CascadeRecommendation
from ..trace import LimitName
from .budgets import BudgetResult, Contrib, correlation_multipliers, nets

if TYPE_CHECKING:
    from ..contracts import PositionSizingDecision, TacticalSignal
    from .correlation import CorrelationMonitor

__all__ = [
    "ConstraintResult",
    "CorrelationAdjustment",
    "CorrelationResult",
    "LimitContext",
    "PortfolioBudget",
    "PortfolioLimit",
    "PositionBudget",
    "StrategyBudget",
    "SymbolBoundLimit",
    "SymbolBounds",
    "run_limits",
    "symbol_bounds",
]

# Scale factors are nudged down by a few ulps so that rounding never leaves a total a hair
# above its cap.
_SAFETY = 1.0 - 1e-12


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
    """One pass of the limits over a batch's contributions (mutated in place)."""

    __slots__ = ("bounds", "contrib", "position_cap_usd", "pv", "symbols", "tight")

    def __init__(self, contrib: Contrib, symbols: list[str], pv: float,
                 bounds: dict[str, SymbolBounds], position_cap_usd: float) -> None:
        self.contrib = {s: dict(row) for s, row in contrib.items()}
        self.symbols = symbols
        self.pv = pv
        self.bounds = bounds
        self.position_cap_usd = position_cap_usd
        self.tight: dict[str, tuple[LimitName, float]] = {}

    def bind(self, symbol: str, limit: LimitName, factor: float) -> None:
        """Record that ``limit`` cut ``symbol`` by ``factor`` (the tightest one is named)."""
        if factor < self.tight.get(symbol, (LimitName.NONE, 1.0))[1]:
            self.tight[symbol] = (limit, factor)


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
        return ConstraintResult(self.name, factors, tuple(sorted(factors)))


class StrategyBudget:
    """A strategy whose gross exceeds ``max_strategy_pct`` x PV is scaled as a whole."""

    name = LimitName.STRATEGY

    def __init__(self, max_strategy_pct: float) -> None:
        self.max_strategy_pct = max_strategy_pct

    def apply(self, ctx: LimitContext) -> ConstraintResult:
        factors: dict[str, float] = {}
        bound: set[str] = set()
        cap = self.max_strategy_pct * ctx.pv
        c = ctx.contrib
        for strat in sorted(c):
            gross = sum(abs(x) for x in c[strat].values())
            if gross > cap:
                f = cap / gross * _SAFETY
                factors[strat] = f
                for sym in c[strat]:
                    c[strat][sym] *= f
                    if c[strat][sym] != 0.0:
                        ctx.bind(sym, LimitName.STRATEGY, f)
                        bound.add(sym)
        return ConstraintResult(self.name, factors, tuple(sorted(bound)))


class PositionBudget:
    """A symbol whose net (strategies summed) exceeds ``max_position_pct`` x PV is scaled."""

    name = LimitName.POSITION

    def __init__(self, max_position_pct: float) -> None:
        self.max_position_pct = max_position_pct

    def apply(self, ctx: LimitContext) -> ConstraintResult:
        factors: dict[str, float] = {}
        cap = self.max_position_pct * ctx.pv
        c = ctx.contrib
        for sym, net in nets(c, ctx.symbols).items():
            if abs(net) > cap:
                f = cap / abs(net) * _SAFETY
                factors[sym] = f
                ctx.bind(sym, LimitName.POSITION, f)
                for strat in c:
                    if sym in c[strat]:
                        c[strat][sym] *= f
        return ConstraintResult(self.name, factors, tuple(sorted(factors)))


class PortfolioBudget:
    """If the gross of the nets exceeds ``max_portfolio_pct`` x PV, everything is scaled."""

    name = LimitName.PORTFOLIO

    def __init__(self, max_portfolio_pct: float) -> None:
        self.max_portfolio_pct = max_portfolio_pct

    def apply(self, ctx: LimitContext) -> ConstraintResult:
        c = ctx.contrib
        gross = sum(abs(x) for x in nets(c, ctx.symbols).values())
        cap = self.max_portfolio_pct * ctx.pv
        if gross <= cap:
            return ConstraintResult(self.name, {}, ())
        f = cap / gross * _SAFETY
        for strat in c:
            for sym in c[strat]:
                c[strat][sym] *= f
        bound = tuple(sym for sym, net in nets(c, ctx.symbols).items() if net != 0.0)
        for sym in bound:
            ctx.bind(sym, LimitName.PORTFOLIO, f)
        return ConstraintResult(self.name, {"all": f}, bound)


def run_limits(limits: Sequence[PortfolioLimit], contrib: Contrib, symbols: list[str],
               pv: float, bounds: dict[str, SymbolBounds],
               position_cap_usd: float) -> BudgetResult:
    """Apply ``limits`` in order to a copy of ``contrib`` (pure: nothing else changes)."""
    ctx = LimitContext(contrib, symbols, pv, bounds, position_cap_usd)
    results = [limit.apply(ctx) for limit in limits]
    factors = {r.name.value: r.factors for r in results
               if r.name in (LimitName.STRATEGY, LimitName.POSITION, LimitName.PORTFOLIO)}
    binding = {sym: ctx.tight.get(sym, (LimitName.NONE, 1.0))[0].value for sym in symbols}
    return BudgetResult(ctx.contrib, factors, binding)


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
            edge[sym] = sum(ers) / len(ers) if ers else math.nan
            vol[sym] = sum(vols) / len(vols) if vols else self.monitor.volatility(sym)
        return edge, vol
