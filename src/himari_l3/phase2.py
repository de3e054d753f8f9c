"""Phase 2: many strategies' signals -> one netted, correlation-aware, budgeted portfolio.

    validate each signal -> regime observed once per symbol -> Phase 1 per signal against one
    equity snapshot -> net per symbol -> correlation adjustment -> budgets (strategy,
    position, portfolio) -> drift and weight history

The result never depends on the order of the signals: signals are put in a canonical order
first, and everything after works on sorted keys.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._clock import SYSTEM_CLOCK, Clock
from ._exceptions import InvalidPriceException, StateRestoreError, ValidationError
from ._validate import positive
from .config.schema import PortfolioConfig, SizingConfig, parse_config
from .contracts import (
    CascadeIndicators,
    CascadeRecommendation,
    EnsembleAllocation,
    PositionSizingDecision,
    TacticalSignal,
)
from .observers import NULL_OBSERVER, Observer
from .phase1 import Layer3Phase1
from .portfolio.budgets import BudgetResult, apply_budgets, correlation_multipliers, nets
from .portfolio.correlation import CorrelationMonitor
from .portfolio.drift import WeightTracker

__all__ = ["Layer3Phase2Portfolio", "SymbolBounds"]

log = logging.getLogger(__name__)

STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class SymbolBounds:
    """What the limits allow for one symbol in this batch (re-applied after any RL blend)."""

    max_long_usd: float
    max_short_usd: float
    cascade_multiplier: float
    exit: bool


@dataclass(slots=True)
class Batch:
    """One batch after Phase 1 sizing and correlation, before budgets."""

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


class Layer3Phase2Portfolio:
    """Multi-strategy allocator; see the module docstring and docs/sizing-math.md §8."""

    def __init__(
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
        self.portfolio_value = positive(InvalidPriceException, "portfolio_value",
                                        portfolio_value)
        if observer is None and enable_metrics:
            from .observability.prometheus import default_observer

            observer = default_observer()
        self.observer = observer or NULL_OBSERVER
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

    # ------------------------------------------------------------------ public
    def process_multi_strategy_signals(
        self,
        signals: list[TacticalSignal] | list[Any],
        cascade_indicators: dict[str, CascadeIndicators] | CascadeIndicators,
        current_prices: dict[str, float],
    ) -> EnsembleAllocation:
        """Allocate one batch. A bad signal, price or cascade reading drops only its signal
        (listed in ``rejected_signals`` with its reason); the rest are allocated."""
        t0 = time.perf_counter()
        batch = self.prepare(signals, cascade_indicators, current_prices)
        limited = self.limit(batch, batch.contrib)
        provenance = {s: {"path": "baseline", "reason": "phase2"} for s in batch.symbols}
        alloc = self.commit(batch, limited, provenance)
        self.observer.on_allocation("phase2", alloc, time.perf_counter() - t0)
        return alloc

    def update_correlations(self, returns: dict[str, float],
                            timestamp_ns: int | None = None) -> dict[str, Any]:
        """Add one time-aligned row of per-symbol returns to the correlation monitor."""
        try:
            self.correlations.update(returns, self.clock.time_ns() if timestamp_ns is None
                                     else timestamp_ns)
        except ValidationError as err:
            self.observer.on_invalid_input("returns", err.field)
            raise
        stats = self.correlations.stats()
        self.observer.on_correlation(stats)
        return stats

    def export_weight_history(self, path: str | Path) -> int:
        """Write the strategy weight history as CSV; returns the number of rows."""
        return self.weights.export_csv(path)

    def get_remaining_risk_budget(self) -> dict[str, Any]:
        """Budget left under each limit, given the last allocation (full when none)."""
        pv, cfg = self.portfolio_value, self.config
        last = self.last_allocation_
        gross = last.total_allocated_usd if last else 0.0
        per_strategy = {s: sum(abs(x) for x in row.values())
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

    def set_portfolio_value(self, value: float) -> None:
        """Mark equity to a new value (used by backtests and the service)."""
        self.portfolio_value = positive(InvalidPriceException, "portfolio_value", value)
        self.phase1.portfolio_value = self.portfolio_value

    # ------------------------------------------------------- stages (Phase 3 too)
    def prepare(
        self,
        signals: list[Any],
        cascade_indicators: dict[str, CascadeIndicators] | CascadeIndicators,
        current_prices: dict[str, float],
    ) -> Batch:
        """Validate, size with Phase 1 against one equity snapshot, net, adjust for
        correlation. Advances regime hysteresis exactly once per symbol."""
        pv = self.portfolio_value
        valid, rejected = self._validate(signals, cascade_indicators, current_prices)
        by_symbol: dict[str, list[TacticalSignal]] = {}
        for sig in valid:
            by_symbol.setdefault(sig.symbol, []).append(sig)
        symbols = sorted(by_symbol)
        table = self.phase1.regimes.table
        for sym in symbols:
            # Several strategies may disagree on the regime: each side observes the regime
            # that is safest for it (a downtrend is safe for longs, not for shorts).
            regimes = sorted({s.regime for s in by_symbol[sym]})
            self.phase1.observe_regime(sym, min(regimes, key=table(1).__getitem__),
                                       min(regimes, key=table(-1).__getitem__))

        decisions: list[PositionSizingDecision] = []
        contrib: dict[str, dict[str, float]] = {}
        for sig in valid:
            cascade = _cascade_for(cascade_indicators, sig.symbol)
            assert cascade is not None  # validated above
            held = self.positions_.get(sig.strategy_id, {}).get(sig.symbol, 0.0)
            d = self.phase1.calculate_position(
                sig, cascade, current_prices[sig.symbol], current_position_usd=held,
                portfolio_value=pv, observe_regime=False)
            decisions.append(d)
            contrib.setdefault(sig.strategy_id, {})[sig.symbol] = d.position_size_usd
        bounds = self._bounds(decisions, pv)
        raw_nets = nets(contrib, symbols)
        gross_contrib = sum(abs(x) for row in contrib.values() for x in row.values())
        netted = gross_contrib - sum(abs(x) for x in raw_nets.values())

        penalties, corr_note, mult, pairwise = self._correlation(raw_nets, symbols, by_symbol)
        for row in contrib.values():
            for sym in row:
                row[sym] *= mult[sym]
        trace = {
            "portfolio_value": pv, "netted_usd": max(0.0, netted),
            "nets_before_correlation": raw_nets, "correlation_multipliers": mult,
            "multi_asset_kelly": corr_note, "pairwise_penalties": pairwise,
            "signals": [{"strategy_id": d.strategy_id, "symbol": d.symbol,
                         "size_usd": d.position_size_usd, "status": d.validation_status.value,
                         "reasons": list(d.reason_codes),
                         "binding_limit": d.diagnostics["binding_limit"]}
                        for d in decisions],
        }
        return Batch(pv, self.clock.time_ns(), symbols, decisions, contrib, bounds, rejected,
                     penalties, by_symbol, trace)

    def limit(self, batch: Batch, contrib: dict[str, dict[str, float]]) -> BudgetResult:
        """Apply the symbol bounds and the three budgets (pure: no state changes)."""
        clipped: dict[str, dict[str, float]] = {}
        prior: dict[str, tuple[str, float]] = {}
        net = nets(contrib, batch.symbols)
        cap = self.config.max_position_pct * batch.pv
        for strat, row in contrib.items():
            out = clipped.setdefault(strat, {})
            for sym, usd in row.items():
                b = batch.bounds[sym]
                n = net[sym]
                f = 1.0
                bound = math.inf
                if n > b.max_long_usd:
                    f, bound = b.max_long_usd / n, b.max_long_usd
                elif -n > b.max_short_usd:
                    f, bound = b.max_short_usd / -n, b.max_short_usd
                if f < 1.0:
                    # A bound equal to the per-position cap is the position budget binding.
                    name = "exit" if b.exit else ("position" if bound >= cap else "direction")
                    prior[sym] = (name, f)
                out[sym] = usd * f if f > 0.0 else 0.0
        cfg = self.config
        return apply_budgets(clipped, batch.symbols, batch.pv, cfg.max_position_pct,
                             cfg.max_strategy_pct, cfg.max_portfolio_pct, prior)

    def commit(self, batch: Batch, limited: BudgetResult,
               provenance: dict[str, dict[str, str]]) -> EnsembleAllocation:
        """Record the allocation: positions, drift, weight history. Called once per batch."""
        final = nets(limited.contrib, batch.symbols)
        final = {s: (0.0 if x == 0.0 else x) for s, x in final.items()}  # no -0.0
        gross_by_strat = {s: sum(abs(x) for x in row.values())
                          for s, row in sorted(limited.contrib.items())}
        total_gross_strat = sum(gross_by_strat.values())
        weights = ({s: g / total_gross_strat for s, g in gross_by_strat.items() if g > 0.0}
                   if total_gross_strat > 0 else {})
        total = sum(abs(x) for x in final.values())
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
        return alloc

    # ---------------------------------------------------------------- helpers
    def _validate(
        self, signals: list[Any], cascade: dict[str, CascadeIndicators] | CascadeIndicators,
        prices: dict[str, float],
    ) -> tuple[list[TacticalSignal], list[dict[str, Any]]]:
        rejected: list[dict[str, Any]] = []
        candidates: list[tuple[int, TacticalSignal]] = []
        for i, raw in enumerate(signals if isinstance(signals, (list, tuple)) else []):
            try:
                sig = raw if isinstance(raw, TacticalSignal) else TacticalSignal.from_dict(raw)
            except ValidationError as err:
                rejected.append(_reject(i, raw, "INVALID_SIGNAL", str(err)))
                self.observer.on_invalid_input("signal", err.field)
                continue
            price = prices.get(sig.symbol) if isinstance(prices, dict) else None
            if price is None:
                rejected.append(_reject(i, sig, "MISSING_PRICE",
                                        f"current_prices[{sig.symbol}] is missing"))
                continue
            if (isinstance(price, bool) or not isinstance(price, (int, float))
                    or not math.isfinite(price) or price <= 0):
                rejected.append(_reject(i, sig, "INVALID_PRICE",
                                        f"current_prices[{sig.symbol}] was {price!r}, "
                                        "expected a finite number > 0"))
                self.observer.on_invalid_input("price", f"current_prices[{sig.symbol}]")
                continue
            if _cascade_for(cascade, sig.symbol) is None:
                rejected.append(_reject(i, sig, "MISSING_CASCADE",
                                        f"cascade_indicators[{sig.symbol}] is missing or not "
                                        "a CascadeIndicators"))
                continue
            candidates.append((i, sig))
        # One signal per strategy x symbol: the newest wins (ties broken by content), so the
        # outcome is the same in any order.
        best: dict[tuple[str, str], tuple[int, TacticalSignal]] = {}
        for i, sig in candidates:
            key = (sig.strategy_id, sig.symbol)
            cur = best.get(key)
            if cur is None or _newer(sig, cur[1]):
                if cur is not None:
                    rejected.append(_reject(cur[0], cur[1], "DUPLICATE_SUPERSEDED",
                                            "a newer signal for the same strategy and symbol"))
                best[key] = (i, sig)
            else:
                rejected.append(_reject(i, sig, "DUPLICATE_SUPERSEDED",
                                        "a newer signal for the same strategy and symbol"))
        rejected.sort(key=lambda r: (r["index"], r["code"]))
        for r in rejected:
            if r["code"] == "DUPLICATE_SUPERSEDED":
                r.pop("index")
        valid = [best[k][1] for k in sorted(best)]
        return valid, rejected

    def _bounds(self, decisions: list[PositionSizingDecision],
                pv: float) -> dict[str, SymbolBounds]:
        """What the limits allow per symbol: one pass over the batch's decisions."""
        cap = self.config.max_position_pct * pv
        allow_short = self.phase1.config.limits.allow_short
        # symbol -> [exit, cascade keep-factor, long asked, short asked, held long, held short]
        acc: dict[str, list[Any]] = {}
        for d in decisions:
            a = acc.get(d.symbol)
            if a is None:
                a = acc[d.symbol] = [False, 1.0, False, False, 0.0, 0.0]
            if d.cascade_recommendation is CascadeRecommendation.EXIT:
                a[0] = True
            a[1] = min(a[1], d.diagnostics["cascade"]["multiplier"])
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

    def _correlation(
        self, net: dict[str, float], symbols: list[str],
        by_symbol: dict[str, list[TacticalSignal]],
    ) -> tuple[dict[str, float], str, dict[str, float], dict[str, float]]:
        """(fraction removed, multi-asset Kelly note, multiplier, pairwise penalty) per
        symbol."""
        cc = self.config.correlation
        live = [s for s in symbols if net[s] != 0.0]
        none = dict.fromkeys(symbols, 0.0)
        if len(live) < 2:
            return (none, "not applicable: fewer than two positions",
                    dict.fromkeys(symbols, 1.0), none)
        _, shrinkage, _ = self.correlations.correlation(symbols)
        if shrinkage >= 1.0:
            # The identity: no pair is correlated and the joint Kelly equals the single one.
            return (none, "not applicable: no correlation evidence yet (shrinkage 1)",
                    dict.fromkeys(symbols, 1.0), none)
        edge: dict[str, float] = {}
        vol: dict[str, float | None] = {}
        for sym in symbols:
            sigs = [s for s in by_symbol[sym] if s.action.direction * net[sym] > 0]
            ers = [s.expected_return for s in sigs if s.expected_return is not None]
            vols = [s.predicted_volatility for s in sigs if s.predicted_volatility is not None]
            edge[sym] = sum(ers) / len(ers) if ers else math.nan
            vol[sym] = sum(vols) / len(vols) if vols else self.correlations.volatility(sym)
        mult, penalty, note = correlation_multipliers(
            net, self.correlations.matrix_rows(symbols), symbols, edge, vol,
            cc.max_correlation, cc.penalty_strength,
            self.correlations.inverse if cc.use_multi_asset_kelly else None)
        removed = {s: 1.0 - mult[s] for s in symbols}
        return removed, note, mult, penalty

    # ------------------------------------------------------------------ state
    def export_state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION, "phase1": self.phase1.export_state(),
            "correlation": self.correlations.export_state(),
            "weights": self.weights.export_state(), "positions": self.positions_,
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


def _cascade_for(cascade: Any, symbol: str) -> CascadeIndicators | None:
    if isinstance(cascade, CascadeIndicators):
        return cascade
    if isinstance(cascade, dict):
        c = cascade.get(symbol)
        return c if isinstance(c, CascadeIndicators) else None
    return None


def _newer(a: TacticalSignal, b: TacticalSignal) -> bool:
    """Total order on signals of one key: newest, then most confident, then by content."""
    ka, kb = (a.timestamp_ns, a.confidence), (b.timestamp_ns, b.confidence)
    if ka != kb:
        return ka > kb
    return repr(a.to_dict()) > repr(b.to_dict())


def _reject(index: int, raw: Any, code: str, reason: str) -> dict[str, Any]:
    strategy = getattr(raw, "strategy_id", None)
    symbol = getattr(raw, "symbol", None)
    if isinstance(raw, dict):
        strategy, symbol = raw.get("strategy_id"), raw.get("symbol")
    return {"index": index, "strategy_id": strategy, "symbol": symbol, "code": code,
            "reason": reason}


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

