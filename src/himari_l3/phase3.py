"""Phase 3: the Phase 2 baseline, optionally blended with an RL model, inside the same limits.

    Phase 2 prepare (once) -> baseline limits -> RL predictions for the signals whose symbol
    the limits leave room for (parallel, one total deadline) -> per-signal confidence-weighted
    blend (RL weight <= max_rl_weight) -> every Phase 1/2 limit again -> commit once

Any RL problem (disabled, breaker open, timeout, HTTP error, bad payload, low confidence)
leaves that signal at its baseline contribution, and the symbol's provenance says why. The RL
can never take a position the baseline's limits forbid: exits stay 0, a direction Layer 2 did
not ask for stays closed, caps and budgets are re-applied after the blend.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ._clock import SYSTEM_CLOCK, Clock
from ._exceptions import InvalidOutcomeException, StateRestoreError
from ._validate import in_range, nonempty_str
from .config.schema import Layer3Config, parse_config
from .contracts import CascadeIndicators, EnsembleAllocation, RLPrediction, TacticalSignal
from .events import (
    AllocationMade,
    HybridDecided,
    PathOutcomeRecorded,
    RLLimitClipped,
    RLPredictionBlended,
    RLRequestsCompleted,
    RLSymbolFellBack,
)
from .observers import NULL_OBSERVER, Observer, resolve_observer
from .phase2 import Batch, Layer3Phase2Portfolio
from .portfolio.budgets import Contrib
from .resilience import CircuitBreaker
from .rl_guard import GuardedModel, default_rl_client
from .rl_port import RLFailure, RLModel

__all__ = ["Layer3Phase3Hybrid"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Blend:
    """One batch's blend: contributions after it, the strategies blended per symbol, the
    failure reasons per symbol, and the trace of each blend."""

    contrib: dict[str, dict[str, float]]
    used: dict[str, list[str]] = field(default_factory=dict)
    failed: dict[str, list[str]] = field(default_factory=dict)
    blends: list[dict[str, Any]] = field(default_factory=list)


class Layer3Phase3Hybrid:
    """Hybrid orchestrator with automatic, measurable fallback to the Phase 2 baseline.

    The three deployment modes of the user's document::

        Layer3Phase3Hybrid(portfolio_value=100000, enable_rl=False, enable_metrics=True)
        Layer3Phase3Hybrid(portfolio_value=100000, enable_rl=True, use_mock_rl=True)
        Layer3Phase3Hybrid(portfolio_value=100000, enable_rl=True,
                           rl_endpoint="http://host:8888/predict", rl_timeout_sec=5.0)

    Explicit arguments override ``config`` (a :class:`Layer3Config`). ``rl_timeout_sec`` is
    the total RL deadline per decision (default 0.15 s of the 200 ms budget).

    The model: ``rl_client`` (a guarded client, e.g. `TransformerRLClient`) is used as given;
    ``rl_model`` (any `~himari_l3.rl_port.RLModel` transport) is guarded here with the
    configured breaker; otherwise, when RL is enabled, the client the config asks for (mock
    or HTTP) is built by the installed factory (``bootstrap.build_rl_client``).
    """

    def __init__(  # noqa: PLR0913, PLR0917 - the user's documented constructor
        self,
        portfolio_value: float | None = None,
        kelly_fraction: float | None = None,
        max_position_pct: float | None = None,
        enable_rl: bool | None = None,
        rl_endpoint: str | None = None,
        rl_timeout_sec: float | None = None,
        use_mock_rl: bool | None = None,
        enable_metrics: bool = True,
        circuit_breaker: CircuitBreaker | None = None,
        *,
        max_strategy_pct: float | None = None,
        max_portfolio_pct: float | None = None,
        max_correlation: float | None = None,
        allow_short: bool | None = None,
        max_rl_weight: float | None = None,
        config: Layer3Config | None = None,
        rl_client: GuardedModel | None = None,
        rl_model: RLModel | None = None,
        observer: Observer | None = None,
        clock: Clock | None = None,
        performance_periods_per_year: float = 8760.0,
    ) -> None:
        cfg = _override(config or Layer3Config(), portfolio_value, enable_rl, rl_endpoint,
                        rl_timeout_sec, use_mock_rl, max_rl_weight)
        self.config = cfg
        self.clock = clock or SYSTEM_CLOCK
        self.observer = resolve_observer(observer, enable_metrics)
        self.phase2 = Layer3Phase2Portfolio(
            cfg.portfolio_value, kelly_fraction, max_position_pct, max_strategy_pct,
            max_portfolio_pct, max_correlation, enable_metrics=False, allow_short=allow_short,
            config=cfg.portfolio, sizing_config=cfg.sizing, observer=self.observer,
            clock=self.clock)
        self.rl_client: GuardedModel | None = rl_client
        if self.rl_client is None and (rl_model is not None or cfg.rl.enabled):
            breaker = circuit_breaker or self._breaker(cfg)
            self.rl_client = (
                GuardedModel(rl_model, breaker, timeout_sec=cfg.rl.timeout_sec,
                             min_confidence=cfg.rl.min_confidence)
                if rl_model is not None else default_rl_client(cfg, breaker, self.clock))
        self.circuit_breaker: CircuitBreaker | None = (
            self.rl_client.circuit_breaker if self.rl_client is not None else circuit_breaker)
        if self.circuit_breaker is not None and self.observer is not NULL_OBSERVER:
            self.circuit_breaker.add_listener(self.observer.emit, announce=True)
        self.periods_per_year = performance_periods_per_year
        hist = cfg.rl.performance_history_size
        self.outcomes_: dict[str, deque[float]] = {"rl": deque(maxlen=hist),
                                                   "baseline": deque(maxlen=hist)}
        self.total_decisions = 0
        self.rl_decisions = 0
        self.fallback_decisions = 0
        self.fallback_reasons: dict[str, int] = {}
        self._stopped = False

    def _breaker(self, cfg: Layer3Config) -> CircuitBreaker:
        cb = cfg.circuit_breaker
        return CircuitBreaker(
            "rl", failure_threshold=cb.failure_threshold, window_sec=cb.window_sec,
            initial_timeout_sec=cb.initial_timeout_sec, max_timeout_sec=cb.max_timeout_sec,
            backoff_multiplier=cb.backoff_multiplier, enabled=cb.enabled,
            failure_rate_threshold=cb.failure_rate_threshold,
            minimum_calls=cb.minimum_calls, rate_window_calls=cb.rate_window_calls,
            call_deadline_sec=cfg.rl.timeout_sec, clock=self.clock)

    def apply_config(self, config: Layer3Config) -> None:
        """Hot reload: swap limits and RL blend parameters; learned state, positions, RL
        history, the breaker's state and the marked-to-market equity are kept (equity is
        reset only when ``portfolio_value`` itself changes). Keys that need a restart (RL
        endpoint, enabling RL, window sizes of bounded histories) are refused by the
        reloader before this is called (``config/reload.py``)."""
        old = self.config
        self.phase2.apply_config(config.portfolio, config.sizing)
        if config.portfolio_value != old.portfolio_value:
            self.phase2.set_portfolio_value(config.portfolio_value)
        cb = config.circuit_breaker
        if self.circuit_breaker is not None:
            self.circuit_breaker.reconfigure(
                failure_threshold=cb.failure_threshold, window_sec=cb.window_sec,
                initial_timeout_sec=cb.initial_timeout_sec, max_timeout_sec=cb.max_timeout_sec,
                backoff_multiplier=cb.backoff_multiplier, enabled=cb.enabled,
                failure_rate_threshold=cb.failure_rate_threshold,
                minimum_calls=cb.minimum_calls, rate_window_calls=cb.rate_window_calls,
                call_deadline_sec=(config.rl.timeout_sec
                                   if self.circuit_breaker.call_deadline_sec is not None
                                   else None))
        if self.rl_client is not None:
            if self.rl_client.timeout_sec is not None:
                self.rl_client.timeout_sec = config.rl.timeout_sec
            self.rl_client.min_confidence = config.rl.min_confidence
        self.config = config

    # --------------------------------------------------------------- decisions
    def process_signals(
        self,
        signals: list[TacticalSignal] | list[Any],
        cascade_indicators: dict[str, CascadeIndicators] | CascadeIndicators,
        current_prices: dict[str, float],
        *,
        committed: Contrib | None = None,
    ) -> EnsembleAllocation:
        """Allocate a batch (blocking). Safe to call from a thread running an event loop.
        ``committed``: the book's commitments (``Layer3Phase2Portfolio``'s
        ``process_multi_strategy_signals`` says what they do)."""
        t0 = time.perf_counter()
        if not signals:
            return self._empty(t0, committed)
        batch, asks = self._begin(signals, cascade_indicators, current_prices, committed)
        results: list[RLPrediction | RLFailure] = []
        if asks and self.rl_client is not None:
            results = self.rl_client.predict_many_sync(asks, None, self.config.rl.timeout_sec)
        return self._finish(batch, asks, results, t0)

    async def process_signals_async(
        self,
        signals: list[TacticalSignal] | list[Any],
        cascade_indicators: dict[str, CascadeIndicators] | CascadeIndicators,
        current_prices: dict[str, float],
        *,
        committed: Contrib | None = None,
    ) -> EnsembleAllocation:
        """Async twin of :meth:`process_signals` (same allocation for the same inputs)."""
        t0 = time.perf_counter()
        if not signals:
            return self._empty(t0, committed)
        batch, asks = self._begin(signals, cascade_indicators, current_prices, committed)
        results: list[RLPrediction | RLFailure] = []
        if asks and self.rl_client is not None:
            results = await self.rl_client.predict_many(asks, None, self.config.rl.timeout_sec)
        return self._finish(batch, asks, results, t0)

    def _begin(
        self,
        signals: list[Any],
        cascade_indicators: dict[str, CascadeIndicators] | CascadeIndicators,
        current_prices: dict[str, float],
        committed: Contrib | None,
    ) -> tuple[Batch, list[TacticalSignal]]:
        """Prepare the baseline once (the edge parses the inputs into one typed batch) and
        decide which signals to ask the model about."""
        batch = self.phase2.prepare(
            self.phase2.parse(signals, cascade_indicators, current_prices), committed)
        return batch, self._asks(batch)

    def _asks(self, batch: Batch) -> list[TacticalSignal]:
        """Signals worth asking the RL about: none whose symbol the limits hold at zero."""
        if self.rl_client is None:
            return []
        asks: list[TacticalSignal] = []
        for sym in batch.symbols:
            b = batch.bounds[sym]
            if b.exit or (b.max_long_usd == 0.0 and b.max_short_usd == 0.0):
                continue
            # A SELL with shorting disabled, or a HOLD of nothing, must stay at 0 whatever
            # the model says: asking about it would be a wasted call.
            asks.extend(s for s in sorted(batch.signals[sym], key=lambda s: s.strategy_id)
                        if (s.action.direction > 0)
                        or (s.action.direction < 0 and self._allow_short())
                        or (s.action.direction == 0
                            and batch.contrib[s.strategy_id][sym] != 0.0))
        return asks

    def _allow_short(self) -> bool:
        return self.phase2.phase1.config.limits.allow_short

    @staticmethod
    def _clamp_direction(direction: int, base: float, blended: float) -> float:
        """Direction rules per signal: a BUY stays >= 0, a SELL <= 0 (callers only blend a
        SELL when shorting is allowed), a HOLD between 0 and its current (baseline) size."""
        if direction > 0:
            return max(0.0, blended)
        if direction < 0:
            return min(0.0, blended)
        return min(max(blended, 0.0), base) if base > 0 else max(min(blended, 0.0), base)

    def _finish(self, batch: Batch, asks: list[TacticalSignal],
                results: list[RLPrediction | RLFailure], t0: float) -> EnsembleAllocation:
        """Blend, re-apply every limit, name each symbol's path, commit once."""
        cfg = self.config.rl
        baseline = self.phase2.limit(batch, batch.contrib)
        blend = self._blend(batch, asks, results)
        # Nothing blended (RL off, or every prediction failed): the baseline is the answer.
        limited = self.phase2.limit(batch, blend.contrib) if blend.used else baseline
        provenance = self._provenance(batch, blend, limited.binding)
        alloc = self.phase2.commit(batch, limited, provenance)
        alloc.trace["rl"] = {
            "enabled": self.rl_client is not None, "asked": len(asks),
            "blends": blend.blends, "failures": blend.failed,
            "max_rl_weight": cfg.max_rl_weight,
            "baseline_allocations": {s: sum(r.get(s, 0.0) for r in baseline.contrib.values())
                                     for s in batch.symbols},
        }
        self._count("rl" if blend.used else "fallback", provenance, t0, alloc)
        return alloc

    def _blend(self, batch: Batch, asks: list[TacticalSignal],
               results: list[RLPrediction | RLFailure]) -> _Blend:
        """Each usable prediction moves its strategy's contribution toward the model's
        target, by the prediction's confidence (at most ``max_rl_weight``), within the
        signal's direction rules."""
        max_w = self.config.rl.max_rl_weight
        out = _Blend({s: dict(row) for s, row in batch.contrib.items()} if results
                     else batch.contrib)
        outcomes: dict[str, int] = {}
        for sig, res in zip(asks, results, strict=True):
            sym = sig.symbol
            if isinstance(res, RLFailure):
                out.failed.setdefault(sym, []).append(res.reason)
                outcomes[res.reason] = outcomes.get(res.reason, 0) + 1
                continue
            outcomes["success"] = outcomes.get("success", 0) + 1
            w = min(max_w, res.confidence)
            base = out.contrib[sig.strategy_id][sym]
            target = (res.optimal_position_pct * batch.pv
                      * batch.bounds[sym].cascade_multiplier)
            blended = self._clamp_direction(sig.action.direction, base,
                                            (1.0 - w) * base + w * target)
            if not math.isfinite(blended):  # unreachable for validated predictions
                out.failed.setdefault(sym, []).append("invalid_response")
                continue
            out.contrib[sig.strategy_id][sym] = blended
            out.used.setdefault(sym, []).append(sig.strategy_id)
            if self.observer is not NULL_OBSERVER:
                self.observer.emit(RLPredictionBlended(res.latency_ms / 1e3, w))
            out.blends.append({"strategy_id": sig.strategy_id, "symbol": sym, "weight": w,
                               "baseline_usd": base, "rl_target_usd": target,
                               "blended_usd": blended, "model_version": res.model_version})
        if outcomes and self.observer is not NULL_OBSERVER:
            self.observer.emit(RLRequestsCompleted(tuple(sorted(outcomes.items()))))
        return out

    def _provenance(self, batch: Batch, blend: _Blend,
                    binding: dict[str, str]) -> dict[str, dict[str, str]]:
        """Which path decided each symbol, and why."""
        provenance: dict[str, dict[str, str]] = {}
        for sym in batch.symbols:
            if sym in blend.used:
                provenance[sym] = {"path": "rl", "reason": "blended"}
                if binding[sym] != "none":
                    self.observer.emit(RLLimitClipped(binding[sym]))
            else:
                reason = self._fallback_reason(sym, batch, blend.failed)
                provenance[sym] = {"path": "baseline", "reason": reason}
                self.observer.emit(RLSymbolFellBack(reason))
        return provenance

    def _fallback_reason(self, sym: str, batch: Batch, failed: dict[str, list[str]]) -> str:
        if self.rl_client is None:
            return "rl_disabled"
        b = batch.bounds[sym]
        if b.exit:
            return "cascade_exit"
        if b.max_long_usd == 0.0 and b.max_short_usd == 0.0:
            return "limits_forbid"
        reasons = sorted(set(failed.get(sym, [])))
        return reasons[0] if len(reasons) == 1 else ("+".join(reasons) or "no_prediction")

    def _count(self, path: str, provenance: dict[str, dict[str, str]], t0: float,
               alloc: EnsembleAllocation) -> None:
        self.total_decisions += 1
        if path == "rl":
            self.rl_decisions += 1
        else:
            self.fallback_decisions += 1
            reasons = sorted({p["reason"] for p in provenance.values()}) or ["empty_batch"]
            for r in reasons:
                self.fallback_reasons[r] = self.fallback_reasons.get(r, 0) + 1
            if self.circuit_breaker is not None and self.rl_client is not None:
                self.circuit_breaker.record_fallback()
        latency = time.perf_counter() - t0
        if self.observer is not NULL_OBSERVER:
            self.observer.emit(HybridDecided(path, latency,
                                             self.rl_decisions / self.total_decisions))
            self.observer.emit(AllocationMade("phase3", alloc, latency))

    def _empty(self, t0: float, committed: Contrib | None = None) -> EnsembleAllocation:
        log.warning("process_signals called with an empty signal list: empty allocation")
        pv = self.phase2.portfolio_value
        trace: dict[str, Any] = {"reason": "empty_batch"}
        if committed is not None:  # nothing new: the commitments stand as they are
            trace["book"] = {"committed": committed, "committed_factors": {}, "brackets": {}}
        alloc = EnsembleAllocation(
            allocations={}, total_allocated_usd=0.0, portfolio_value=pv, utilization_pct=0.0,
            strategy_weights={}, drifted_strategies=[], max_drift_pct=0.0,
            correlation_penalties={}, timestamp_ns=self.clock.time_ns(), trace=trace)
        self._count("fallback", {}, t0, alloc)
        return alloc

    # ---------------------------------------------------------------- outcomes
    def record_outcome(self, symbol: str, actual_return: float, used_rl: bool, *,
                       teach: bool = True) -> None:
        """Record the realised return of a decision's position on ``symbol`` (0.01 = +1 %
        profit) under the path that decided it; also (``teach``) teaches the Kelly and
        conformal learners of the strategies that held the symbol in the last allocation.
        The book's closed trades teach each strategy behind the position themselves and
        pass ``teach=False``."""
        nonempty_str(InvalidOutcomeException, "symbol", symbol)
        r = in_range(InvalidOutcomeException, "actual_return", actual_return, -1.0, 10.0)
        path = "rl" if used_rl else "baseline"
        self.outcomes_[path].append(r)
        last = self.phase2.last_allocation_
        if teach and last is not None:
            net = last.allocations.get(symbol, 0.0)
            for strat, row in sorted(last.breakdown.items()):
                c = row.get(symbol, 0.0)
                if c != 0.0 and net != 0.0:
                    self.phase2.phase1.update_from_trade_result(
                        strat, symbol, r if (c > 0) == (net > 0) else -r)
        if self.observer is not NULL_OBSERVER:
            adv = self.get_performance_comparison()["rl_advantage"]
            self.observer.emit(PathOutcomeRecorded(path, adv))

    def get_performance_comparison(self) -> dict[str, Any]:
        """Per path: trades, mean, std, Sharpe (per trade and annualised); ``rl_advantage``
        is the RL path's mean minus the baseline's (None until both have trades)."""
        out: dict[str, Any] = {}
        for path, xs in self.outcomes_.items():
            n = len(xs)
            mean = sum(xs) / n if n else 0.0
            std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
            sharpe = mean / std if std > 0 else 0.0
            out[path] = {"trades": n, "mean": mean, "std": std, "sharpe": sharpe,
                         "sharpe_annualized": sharpe * math.sqrt(self.periods_per_year)}
        both = out["rl"]["trades"] and out["baseline"]["trades"]
        out["rl_advantage"] = out["rl"]["mean"] - out["baseline"]["mean"] if both else None
        return out

    # ------------------------------------------------------------------- state
    def get_state(self) -> dict[str, Any]:
        total = self.total_decisions
        return {
            "total_decisions": total, "rl_decisions": self.rl_decisions,
            "fallback_decisions": self.fallback_decisions,
            "rl_usage_rate": self.rl_decisions / total if total else 0.0,
            "fallback_reasons": dict(sorted(self.fallback_reasons.items())),
            "rl_enabled": self.rl_client is not None,
            "rl_client": self.rl_client.get_state() if self.rl_client is not None else None,
            "circuit_breaker": (self.circuit_breaker.get_state()
                                if self.circuit_breaker is not None else None),
            "performance": self.get_performance_comparison(),
            "phase2": self.phase2.get_state(),
        }

    def export_state(self) -> dict[str, Any]:
        return {
            "version": 1, "phase2": self.phase2.export_state(),
            "outcomes": {p: list(xs) for p, xs in self.outcomes_.items()},
            "counters": {"total": self.total_decisions, "rl": self.rl_decisions,
                         "fallback": self.fallback_decisions,
                         "fallback_reasons": dict(self.fallback_reasons)},
            "circuit_breaker": (self.circuit_breaker.export_state()
                                if self.circuit_breaker is not None else None),
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != 1:
            raise StateRestoreError(f"state version was {state.get('version')!r}, expected 1")
        self.phase2.restore_state(state["phase2"])
        for p, xs in state["outcomes"].items():
            self.outcomes_[p].clear()
            self.outcomes_[p].extend(float(x) for x in xs)
        c = state["counters"]
        self.total_decisions, self.rl_decisions = int(c["total"]), int(c["rl"])
        self.fallback_decisions = int(c["fallback"])
        self.fallback_reasons = {str(k): int(v) for k, v in c["fallback_reasons"].items()}
        if state.get("circuit_breaker") and self.circuit_breaker is not None:
            self.circuit_breaker.restore_state(state["circuit_breaker"])

    def stop(self) -> None:
        """Close the RL client's connections (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        if self.rl_client is not None:
            self.rl_client.close()

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> Layer3Phase3Hybrid:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _override(cfg: Layer3Config, pv: float | None, enable_rl: bool | None,
              endpoint: str | None, timeout: float | None, use_mock: bool | None,
              max_rl_weight: float | None) -> Layer3Config:
    data = cfg.model_dump()
    if pv is not None:
        data["portfolio_value"] = pv
    rl = data["rl"]
    for key, value in (("enabled", enable_rl), ("endpoint", endpoint), ("timeout_sec", timeout),
                       ("use_mock", use_mock), ("max_rl_weight", max_rl_weight)):
        if value is not None:
            rl[key] = value
    return cfg if data == cfg.model_dump() else parse_config(Layer3Config, data)
