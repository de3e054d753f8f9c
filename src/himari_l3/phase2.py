"""Phase 2: many strategies' signals -> one netted, correlation-aware, budgeted portfolio.

    parse the batch (edge) -> regime observed once per symbol -> Phase 1 per signal against
    one equity snapshot -> net per symbol -> adjustments (correlation) -> limits (symbol
    bounds, strategy, position, portfolio budgets) -> drift and weight history

The adjustments and limits are declared lists of constraint objects
(``portfolio/constraints.py``); the limits are applied to the baseline and again after any
RL blend (Phase 3). The result never depends on the order of the signals: signals are put in
a canonical order first, and everything after works on sorted keys.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, SupportsFloat

from ._clock import SYSTEM_CLOCK, Clock
from ._exceptions import InvalidPriceException, StateRestoreError, ValidationError
from ._validate import equity
from .batch import SignalBatch, parse_batch
from .config.schema import PortfolioConfig, SizingConfig, parse_config
from .contracts import (
    CascadeIndicators,
    EnsembleAllocation,
    PositionSizingDecision,
    TacticalSignal,
)
from .events import AllocationMade, CorrelationUpdated, InputKind, InputRejected
from .observers import NULL_OBSERVER, Observer, resolve_observer
from .phase1 import Layer3Phase1
from .portfolio.budgets import BudgetResult, Contrib, nets
from .portfolio.constraints import (
    CorrelationAdjustment,
    PortfolioLimit,
    SymbolBounds,
    declared_limits,
    run_limits,
    symbol_bounds,
)
from .portfolio.correlation import CorrelationMonitor
from .portfolio.drift import WeightTracker

__all__ = ["Batch", "Layer3Phase2Portfolio", "SymbolBounds"]

log = logging.getLogger(__name__)

STATE_VERSION = 1


@dataclass(slots=True)
class Batch:
    """One batch after Phase 1 sizing and the adjustments, before the limits."""

    pv: float
    timestamp_ns: int
    symbols: list[str]
    decisions: list[PositionSizingDecision]
    contrib: dict[str, dict[str, float]]
    bounds: dict[str, SymbolBounds]
    rejected: list[dict[str, Any]]
    penalties: dict[str, float]
    signals: dict[str, list[TacticalSignal]]
    trace: dict[str, Any] = field(default_factory=dict)
    # The book's commitments (standing targets the batch does not touch); None: no book.
    committed: Contrib | None = None


class Layer3Phase2Portfolio:
    """Multi-strategy allocator; see the module docstring and docs/sizing-math.md §8."""

    def __init__(  # noqa: PLR0913 - the user's documented constructor
        self,
        portfolio_value: float = 100_000.0,
        kelly_fraction: float | None = None,
        max_position_pct: float | None = None,
        max_strategy_pct: float | None = None,
        max_portfolio_pct: float | None = None,
        max_correlation: float | None = None,
        enable_metrics: bool = True,
        *,
        allow_short: bool | None = None,
        enable_sentiment: bool | None = None,
        config: PortfolioConfig | None = None,
        sizing_config: SizingConfig | None = None,
        observer: Observer | None = None,
        clock: Clock | None = None,
    ) -> None:
        cfg = _override(config or PortfolioConfig(), max_position_pct, max_strategy_pct,
                        max_portfolio_pct, max_correlation)
        self.config = cfg
        self.portfolio_value = equity(InvalidPriceException, "portfolio_value", portfolio_value)
        self.observer = resolve_observer(observer, enable_metrics)
        self.clock = clock or SYSTEM_CLOCK
        # Phase 1's own cap is the portfolio's position cap: one number for one meaning.
        self.phase1 = Layer3Phase1(
            portfolio_value, kelly_fraction, enable_metrics=False,
            enable_sentiment=enable_sentiment, max_position_pct=cfg.max_position_pct,
            allow_short=allow_short, config=sizing_config, observer=self.observer,
            clock=self.clock,
        )
        self.correlations = CorrelationMonitor.from_config(cfg.correlation, self.clock)
        self.weights = WeightTracker(cfg.drift_threshold, cfg.weight_history_size)
        self.positions_: dict[str, dict[str, float]] = {}  # last breakdown (for HOLD)
        self.last_allocation_: EnsembleAllocation | None = None
        self.batches_total = 0
        self._declare_constraints()

    def _declare_constraints(self) -> None:
        """The adjustments (before any blend) and the limits (re-applied after any blend),
        in order; rebuilt when the config changes."""
        cfg = self.config
        cc = cfg.correlation
        self.correlation_adjustment = CorrelationAdjustment(
            self.correlations, cc.max_correlation, cc.penalty_strength,
            cc.use_multi_asset_kelly)
        self.limits: list[PortfolioLimit] = declared_limits(cfg)

    # ------------------------------------------------------------------ public
    def process_multi_strategy_signals(
        self,
        signals: list[TacticalSignal] | list[Any],
        cascade_indicators: dict[str, CascadeIndicators] | CascadeIndicators,
        current_prices: dict[str, float],
        *,
        committed: Contrib | None = None,
    ) -> EnsembleAllocation:
        """Allocate one batch. A bad signal, price or cascade reading drops only its signal
        (listed in ``rejected_signals`` with its reason); the rest are allocated.

        ``committed`` (the book, ``himari_l3.book``): standing targets the batch does not
        touch, ``{strategy: {symbol: usd}}``; every limit then holds over them plus the batch
        (the batch gets what they leave), and the trace's ``book`` entry says how."""
        t0 = time.perf_counter()
        batch = self.prepare(self.parse(signals, cascade_indicators, current_prices),
                             committed)
        limited = self.limit(batch, batch.contrib)
        provenance = {s: {"path": "baseline", "reason": "phase2"} for s in batch.symbols}
        alloc = self.commit(batch, limited, provenance)
        if self.observer is not NULL_OBSERVER:
            self.observer.emit(AllocationMade("phase2", alloc, time.perf_counter() - t0))
        return alloc

    def parse(self, signals: list[TacticalSignal] | list[Any],
              cascade_indicators: Mapping[str, CascadeIndicators] | CascadeIndicators,
              current_prices: Mapping[str, float]) -> SignalBatch:
        """The public API's loose inputs as one typed batch (the edge: ``batch.py``)."""
        return parse_batch(signals, cascade_indicators, current_prices, self.clock.time_ns(),
                           self.observer,
                           round(self.config.max_signal_clock_skew_sec * 1e9))

    def update_correlations(self, returns: Mapping[str, float],
                            timestamp_ns: int | None = None) -> dict[str, Any]:
        """Add one time-aligned row of per-symbol returns to the correlation monitor."""
        try:
            self.correlations.update(returns, self.clock.time_ns() if timestamp_ns is None
                                     else timestamp_ns)
        except ValidationError as err:
            self.observer.emit(InputRejected(InputKind.RETURNS, err.field))
            raise
        stats = self.correlations.stats()
        if self.observer is not NULL_OBSERVER:
            self.observer.emit(CorrelationUpdated(stats["max_abs_correlation"],
                                                  stats["observations"], stats["shrinkage"]))
        return stats

    def export_weight_history(self, path: str | Path) -> int:
        """Write the strategy weight history as CSV; returns the number of rows."""
        return self.weights.export_csv(path)

    def get_remaining_risk_budget(self) -> dict[str, Any]:
        """Budget left under each limit, given the last allocation (full when none)."""
        pv, cfg = self.portfolio_value, self.config
        last = self.last_allocation_
        gross = last.total_allocated_usd if last else 0.0
        per_strategy = {s: sum((abs(x) for x in row.values()), 0.0)
                        for s, row in sorted(self.positions_.items())}
        return {
            "portfolio_usd": max(0.0, cfg.max_portfolio_pct * pv - gross),
            "portfolio_pct": max(0.0, cfg.max_portfolio_pct - gross / pv),
            "per_strategy_usd": {s: max(0.0, cfg.max_strategy_pct * pv - g)
                                 for s, g in per_strategy.items()},
            "per_symbol_usd": {s: max(0.0, cfg.max_position_pct * pv - abs(x))
                               for s, x in (last.allocations.items() if last else [])},
        }

    def get_state(self) -> dict[str, Any]:
        last = self.last_allocation_
        return {
            "portfolio_value": self.portfolio_value,
            "batches_total": self.batches_total,
            "limits": self.config.model_dump(),
            "last_allocation": last.to_dict() if last else None,
            "remaining_risk_budget": self.get_remaining_risk_budget(),
            "correlation": self.correlations.stats(),
            "weight_history_rows": len(self.weights.history_),
            "phase1": self.phase1.get_state(),
        }

    def apply_config(self, config: PortfolioConfig, sizing: SizingConfig) -> None:
        """Swap in new limits (hot reload); learned state, positions and history are kept.
        Phase 1's per-position cap follows the portfolio's, as at construction."""
        sizing = parse_config(SizingConfig, {
            **sizing.model_dump(),
            "limits": {**sizing.limits.model_dump(), "max_position_pct": config.max_position_pct},
        })
        self.config = config
        self.phase1.apply_config(sizing)
        self.weights.threshold = config.drift_threshold
        self.correlations.apply_config(config.correlation)
        self._declare_constraints()

    def restore_last_allocation(self, allocation: EnsembleAllocation | None) -> None:
        """Bring back the last allocation (outcomes are credited to its strategies; HOLD
        keeps its positions). ``export_state`` leaves it out; a snapshot stores it."""
        self.last_allocation_ = allocation

    def hold(self, contrib: Contrib) -> None:
        """What each strategy holds per symbol (a HOLD never grows it): the book sets its
        standing targets here before each batch (without a book: the last breakdown)."""
        self.positions_ = {s: dict(row) for s, row in contrib.items()}

    def set_portfolio_value(self, value: SupportsFloat) -> None:
        """Mark equity to a new value (used by backtests and the service)."""
        self.portfolio_value = equity(InvalidPriceException, "portfolio_value", value)
        self.phase1.portfolio_value = self.portfolio_value

    # ------------------------------------------------------- stages (Phase 3 too)
    def prepare(self, batch: SignalBatch, committed: Contrib | None = None) -> Batch:
        """Size each signal with Phase 1 against one equity snapshot, net, apply the
        adjustments. Advances regime hysteresis exactly once per symbol. ``committed``: the
        book's commitments, kept with the batch for the limits."""
        pv = self.portfolio_value
        by_symbol: dict[str, list[TacticalSignal]] = {}
        for sig in batch.signals:
            by_symbol.setdefault(sig.symbol, []).append(sig)
        symbols = sorted(by_symbol)
        self._observe_regimes(symbols, by_symbol)
        decisions: list[PositionSizingDecision] = []
        contrib: dict[str, dict[str, float]] = {}
        market = batch.market
        size = self.phase1.size_validated  # the batch was validated when it was parsed
        clock = time.perf_counter_ns
        for sig in batch.signals:
            snap = market[sig.symbol]
            held = self.positions_.get(sig.strategy_id, {}).get(sig.symbol, 0.0)
            d = size(sig, snap.cascade, snap.price, pv, held, False, clock())
            decisions.append(d)
            contrib.setdefault(sig.strategy_id, {})[sig.symbol] = d.position_size_usd
        bounds = symbol_bounds(decisions, self.config.max_position_pct * pv,
                               self.phase1.config.limits.allow_short)
        raw_nets = nets(contrib, symbols)
        gross_contrib = sum((abs(x) for row in contrib.values() for x in row.values()), 0.0)
        netted = gross_contrib - sum((abs(x) for x in raw_nets.values()), 0.0)
        corr = self.correlation_adjustment.apply(raw_nets, symbols, by_symbol)
        for row in contrib.values():
            for sym in row:
                row[sym] *= corr.multipliers[sym]
        trace = {
            "portfolio_value": pv, "netted_usd": max(0.0, netted),
            "nets_before_correlation": raw_nets,
            "correlation_multipliers": corr.multipliers, "multi_asset_kelly": corr.note,
            "pairwise_penalties": corr.penalties,
            # (String enums as themselves: they serialise as their values.)
            "signals": [{"strategy_id": d.strategy_id, "symbol": d.symbol,
                         "size_usd": d.position_size_usd, "status": d.validation_status,
                         "reasons": list(d.reason_codes),
                         "binding_limit": d.trace.binding_limit}
                        for d in decisions],
        }
        rejected = [r.to_dict() for r in batch.rejected]
        return Batch(pv, self.clock.time_ns(), symbols, decisions, contrib, bounds, rejected,
                     corr.removed, by_symbol, trace, committed)

    def _observe_regimes(self, symbols: list[str],
                         by_symbol: dict[str, list[TacticalSignal]]) -> None:
        """One regime observation per symbol. Several strategies may disagree on the regime:
        each side observes the regime that is safest for it (a downtrend is safe for longs,
        not for shorts)."""
        table = self.phase1.regimes.table
        long_table, short_table = table(1), table(-1)
        for sym in symbols:
            regimes = sorted({s.regime for s in by_symbol[sym]})
            self.phase1.observe_regime(sym, min(regimes, key=long_table.__getitem__),
                                       min(regimes, key=short_table.__getitem__))

    def limit(self, batch: Batch, contrib: dict[str, dict[str, float]]) -> BudgetResult:
        """Apply the declared limits in order (pure: no state changes), beside the batch's
        commitments if a book gave any."""
        return run_limits(self.limits, contrib, batch.symbols, batch.pv, batch.bounds,
                          self.config.max_position_pct * batch.pv, batch.committed)

    def commit(self, batch: Batch, limited: BudgetResult,
               provenance: dict[str, dict[str, str]]) -> EnsembleAllocation:
        """Record the allocation: positions, drift, weight history. Called once per batch."""
        final = nets(limited.contrib, batch.symbols)
        final = {s: (0.0 if x == 0.0 else x) for s, x in final.items()}  # no -0.0
        gross_by_strat = {s: sum((abs(x) for x in row.values()), 0.0)
                          for s, row in sorted(limited.contrib.items())}
        total_gross_strat = sum(gross_by_strat.values(), 0.0)
        weights = ({s: g / total_gross_strat for s, g in gross_by_strat.items() if g > 0.0}
                   if total_gross_strat > 0 else {})
        total = sum((abs(x) for x in final.values()), 0.0)
        drifted, max_drift, drift = self.weights.update(weights, total, batch.timestamp_ns)
        self.positions_ = {s: dict(row) for s, row in limited.contrib.items()}
        cfg = self.config
        trace = dict(batch.trace)
        trace.update({
            "budget_factors": limited.factors, "drift": drift,
            "remaining_risk_budget_usd": max(0.0, cfg.max_portfolio_pct * batch.pv - total),
            "limits": {"max_position_usd": cfg.max_position_pct * batch.pv,
                       "max_strategy_usd": cfg.max_strategy_pct * batch.pv,
                       "max_portfolio_usd": cfg.max_portfolio_pct * batch.pv},
        })
        if batch.committed is not None:
            trace["book"] = {"committed": limited.committed,
                             "committed_factors": limited.committed_factors,
                             "brackets": _brackets(batch.decisions, final),
                             # Symbols the cascade told to EXIT (their trading state halts).
                             "cascade_exits": [s for s in batch.symbols if batch.bounds[s].exit]}
        alloc = EnsembleAllocation(
            allocations=final, total_allocated_usd=total, portfolio_value=batch.pv,
            utilization_pct=100.0 * total / batch.pv, strategy_weights=weights,
            drifted_strategies=drifted, max_drift_pct=100.0 * max_drift,
            correlation_penalties=batch.penalties, timestamp_ns=batch.timestamp_ns,
            breakdown={s: dict(sorted(row.items())) for s, row in sorted(limited.contrib.items())},
            provenance=provenance, binding_limits=limited.binding,
            rejected_signals=batch.rejected, trace=trace,
        )
        self.last_allocation_ = alloc
        self.batches_total += 1
        self.phase1.trim_learned_state()  # after the batch: none of its keys mid-batch
        return alloc

    # ------------------------------------------------------------------ state
    def export_state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION, "phase1": self.phase1.export_state(),
            "correlation": self.correlations.export_state(),
            "weights": self.weights.export_state(),
            "positions": {s: dict(row) for s, row in self.positions_.items()},
            "batches_total": self.batches_total,
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise StateRestoreError(
                f"state version was {state.get('version')!r}, expected {STATE_VERSION}")
        try:
            self.phase1.restore_state(state["phase1"])
            self.correlations.restore_state(state["correlation"])
            self.weights.restore_state(state["weights"])
            self.positions_ = {s: {k: float(v) for k, v in row.items()}
                               for s, row in state["positions"].items()}
            self.batches_total = int(state["batches_total"])
        except (KeyError, TypeError, ValueError) as err:
            raise StateRestoreError(f"state could not be restored: {err!r}") from err


def _brackets(decisions: list[PositionSizingDecision],
              final: dict[str, float]) -> dict[str, dict[str, float | None]]:
    """Per symbol with a position: the stop-loss and take-profit of its largest decision on
    the net's side (Phase 1's execution fields; ties go to the first strategy in order)."""
    best: dict[str, PositionSizingDecision] = {}
    for d in decisions:
        net = final.get(d.symbol, 0.0)
        if net * d.position_size_usd > 0.0:
            held = best.get(d.symbol)
            if held is None or abs(d.position_size_usd) > abs(held.position_size_usd):
                best[d.symbol] = d
    return {sym: {"stop_loss_price": d.stop_loss_price,
                  "take_profit_price": d.take_profit_price} for sym, d in sorted(best.items())}


def _override(cfg: PortfolioConfig, pos: float | None, strat: float | None,
              port: float | None, corr: float | None) -> PortfolioConfig:
    data = cfg.model_dump()
    for key, value in (("max_position_pct", pos), ("max_strategy_pct", strat),
                       ("max_portfolio_pct", port)):
        if value is not None:
            data[key] = value
    if corr is not None:
        data["correlation"]["max_correlation"] = corr
    return cfg if data == cfg.model_dump() else parse_config(PortfolioConfig, data)

