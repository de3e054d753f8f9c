"""Prometheus observer: turns observer hooks into metric writes.

One :class:`PrometheusObserver` per registry. ``default_observer()`` is the process-wide one
on ``prometheus_client.REGISTRY`` (created once, so several orchestrators built with
``enable_metrics=True`` share families instead of colliding). Pass
``PrometheusObserver(Layer3Metrics(CollectorRegistry()))`` to isolate an orchestrator.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY

from ..contracts import MarketRegime
from ..observers import Observer
from .metrics import Layer3Metrics

if TYPE_CHECKING:
    from ..contracts import EnsembleAllocation, PositionSizingDecision

__all__ = ["PrometheusObserver", "default_observer"]

log = logging.getLogger(__name__)

_REGIMES = tuple(r.value for r in MarketRegime)
_FLUSH_AT = 512  # wake the background flusher
_MAX_PENDING = 65_536  # flush inline past this (the flusher is starved)
_FLUSH_INTERVAL_SEC = 1.0
_FLUSH_SLICE = 32


class PrometheusObserver(Observer):
    """Writes Layer 3 metrics for every observed decision, outcome and event."""

    def __init__(self, metrics: Layer3Metrics | None = None) -> None:
        self.metrics = metrics or Layer3Metrics()
        from .. import __version__

        self.metrics.build_info.info({"version": __version__, "state_schema": "1"})
        self._children: dict[tuple[Any, ...], Any] = {}
        # Hot-path hooks only enqueue (tens of ns); the writes happen when the registry is
        # collected (a scrape, a test reading a sample) or when the queue gets long.
        self._pending: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._latest_cascade: dict[str, tuple[float, dict[str, float]]] = {}
        self._last_regime: dict[str, str] = {}
        self._latest_regime: dict[str, str] = {}
        self._flusher: threading.Thread | None = None
        self.metrics.add_pre_collect_hook(self.flush)
        self.metrics.add_pre_collect_hook(self.publish_latest)

    def _defer(self, fn: Callable[..., None], *args: Any) -> None:
        pending = self._pending
        pending.append((fn, args))
        n = len(pending)
        if n >= _FLUSH_AT:
            if self._flusher is None:
                self._start_flusher()
            self._wake.set()
            if n >= _MAX_PENDING:  # the flusher cannot keep up: bound memory, pay here
                self.flush()

    def publish_latest(self) -> None:
        """Set the per-symbol latest-value gauges from what the flushed writes recorded."""
        m = self.metrics
        with self._flush_lock:
            latest, self._latest_cascade = self._latest_cascade, {}
            regimes, self._latest_regime = self._latest_regime, {}
        for sym, (score, components) in latest.items():
            self._child(m.cascade_score, sym).set(score)
            for name, value in components.items():
                self._child(m.cascade_component, sym, name).set(value)
        for sym, effective in regimes.items():
            if self._last_regime.get(sym) != effective:
                self._last_regime[sym] = effective
                for regime in _REGIMES:
                    self._child(m.regime_state, sym, regime).set(
                        1.0 if regime == effective else 0.0)

    def _start_flusher(self) -> None:
        # A daemon thread applies batches of deferred writes off the decision path.
        with self._flush_lock:
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_loop,
                                                 name="himari-l3-metrics", daemon=True)
                self._flusher.start()

    def _flush_loop(self) -> None:
        while True:
            self._wake.wait(_FLUSH_INTERVAL_SEC)
            self._wake.clear()
            # Small slices, yielding the GIL between them, so a decision thread never waits
            # behind a long batch of writes.
            while self.flush(_FLUSH_SLICE):
                time.sleep(0)

    def flush(self, max_items: int | None = None) -> int:
        """Apply deferred metric writes in order (all of them, or at most ``max_items``);
        returns how many are still pending."""
        with self._flush_lock:
            pending = self._pending
            budget = len(pending) if max_items is None else max_items
            while pending and budget > 0:
                budget -= 1
                fn, args = pending.popleft()
                try:
                    fn(*args)
                except Exception:  # a bad write must not break a scrape or a decision
                    log.exception("metric write %s failed", getattr(fn, "__name__", fn))
            return len(pending)

    def _child(self, metric: Any, *labels: str) -> Any:
        # labels() takes a lock and hashes; cache the children on the hot path.
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # ----------------------------------------------------------------- Phase 1
    def on_sizing(self, decision: PositionSizingDecision) -> None:
        self._defer(self._write_sizing, decision)

    def _write_sizing(self, decision: PositionSizingDecision) -> None:
        m = self.metrics
        d = decision.diagnostics
        self._child(m.sizing_decisions, decision.action.value,
                    decision.validation_status.value).inc()
        m.sizing_latency.observe(decision.latency_ms / 1e3)
        size = abs(decision.position_size_usd)
        m.position_size_usd.observe(size)
        m.position_size_ratio.observe(size / d["portfolio_value"])
        k = d["kelly"]
        m.kelly_fraction.observe(k["fraction"])
        m.kelly_win_probability.observe(k["win_prob_effective"])
        m.conformal_multiplier.observe(d["conformal"]["multiplier"])
        m.sentiment_multiplier.observe(d["sentiment_multiplier"])
        m.regime_multiplier.observe(d["regime"]["multiplier"])
        sym = m.symbol_label(decision.symbol)
        # Per-symbol "latest value" gauges only matter at scrape time: keep the latest here
        # and publish once per collection (publish_latest), not on every decision.
        self._latest_cascade[sym] = (decision.cascade_risk_score, d["cascade"]["components"])
        m.cascade_score_hist.observe(decision.cascade_risk_score)
        self._child(m.cascade_recommendations, decision.cascade_recommendation.value).inc()
        limit = d["binding_limit"]
        if limit != "none":
            self._child(m.binding_limits, limit).inc()
        for reason in decision.reason_codes:
            self._child(m.reason_codes, reason).inc()

    def on_invalid_input(self, kind: str, field: str) -> None:
        self._defer(self._write_invalid_input, kind, field)

    def _write_invalid_input(self, kind: str, field: str) -> None:
        self._child(self.metrics.invalid_inputs, kind).inc()

    def on_outcome(self, strategy_id: str, symbol: str, realized_return: float,
                   learned: dict[str, Any]) -> None:
        self._defer(self._write_outcome, strategy_id, symbol, realized_return, learned)

    def _write_outcome(self, strategy_id: str, symbol: str, realized_return: float,
                       learned: dict[str, Any]) -> None:
        m = self.metrics
        strat = m.strategy_label(strategy_id)
        self._child(m.outcomes, "win" if realized_return > 0 else "loss").inc()
        m.realized_return.observe(realized_return)
        self._child(m.kelly_posterior_trades, strat).set(learned["trades"])
        self._child(m.conformal_alpha, strat).set(learned["conformal_alpha"])
        self._child(m.conformal_samples, strat).set(learned["conformal_samples"])
        if learned["conformal_coverage"] is not None:
            self._child(m.conformal_coverage, strat).set(learned["conformal_coverage"])

    def on_regime(self, symbol: str, state: dict[str, Any]) -> None:
        self._defer(self._write_regime, symbol, dict(state))

    def _write_regime(self, symbol: str, state: dict[str, Any]) -> None:
        m = self.metrics
        sym = m.symbol_label(symbol)
        self._latest_regime[sym] = state["effective_long"]  # published at collection
        if state["last_change"] != "none":
            self._child(m.regime_changes, state["last_change"]).inc()
        prev = self._children.get(("false_flips", sym), 0)
        if state["false_flips"] > prev:
            m.regime_false_flips.inc(state["false_flips"] - prev)
        self._children[("false_flips", sym)] = state["false_flips"]

    # ----------------------------------------------------------- Phase 2 and 3
    def on_allocation(self, phase: str, allocation: EnsembleAllocation,
                      latency_sec: float) -> None:
        self._defer(self._write_allocation, phase, allocation, latency_sec)

    def _write_allocation(self, phase: str, allocation: EnsembleAllocation,
                          latency_sec: float) -> None:
        m = self.metrics
        self._child(m.allocations, phase).inc()
        self._child(m.allocation_latency, phase).observe(latency_sec)
        m.allocated_usd.set(allocation.total_allocated_usd)
        m.utilization.set(allocation.utilization_pct / 100.0)
        m.portfolio_value.set(allocation.portfolio_value)
        m.positions.set(allocation.num_positions)
        m.max_drift.set(allocation.max_drift_pct / 100.0)
        for sym, usd in allocation.allocations.items():
            self._child(m.symbol_allocation, m.symbol_label(sym)).set(usd)
        for strat, w in allocation.strategy_weights.items():
            self._child(m.strategy_weight, m.strategy_label(strat)).set(w)
        for penalty in allocation.correlation_penalties.values():
            m.correlation_penalty.observe(penalty)
        if allocation.drifted_strategies:
            m.drift_events.inc(len(allocation.drifted_strategies))
        for limit in allocation.binding_limits.values():
            if limit in ("position", "strategy", "portfolio"):
                self._child(m.budget_scaledowns, limit).inc()
        for rej in allocation.rejected_signals:
            self._child(m.signals_rejected, str(rej.get("code", "invalid"))).inc()
        remaining = allocation.trace.get("remaining_risk_budget_usd")
        if remaining is not None:
            m.remaining_budget.set(remaining)
        netted = allocation.trace.get("netted_usd", 0.0)
        if netted:
            m.netted_usd.inc(netted)

    def on_correlation(self, stats: dict[str, Any]) -> None:
        self._defer(self._write_correlation, stats)

    def _write_correlation(self, stats: dict[str, Any]) -> None:
        m = self.metrics
        m.correlation_max.set(stats["max_abs_correlation"])
        m.correlation_observations.set(stats["observations"])
        m.correlation_shrinkage.set(stats["shrinkage"])

    def on_event(self, name: str, labels: dict[str, str], value: float = 1.0) -> None:
        self._defer(self._write_event, name, labels, value)

    def _write_event(self, name: str, labels: dict[str, str], value: float = 1.0) -> None:
        """Named events from Phase 3, the breaker, the service and the store."""
        metric = getattr(self.metrics, name)
        child = self._child(metric, *labels.values()) if labels else metric
        kind = type(metric).__name__
        if kind == "Counter":
            child.inc(value)
        elif kind == "Gauge":
            child.set(value)
        else:
            child.observe(value)


_default_lock = threading.Lock()
_default: PrometheusObserver | None = None


def default_observer() -> PrometheusObserver:
    """The process-wide observer on ``prometheus_client.REGISTRY`` (created on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = PrometheusObserver(Layer3Metrics(REGISTRY))
        return _default


def breaker_listener(observer: PrometheusObserver, breaker: Any) -> Any:
    """A circuit-breaker listener writing the breaker's metrics (the user's five and more).

    ``breaker`` is a :class:`~himari_l3.resilience.CircuitBreaker`; its current timeout and
    success rate are read when the (deferred) write happens.
    """
    m = observer.metrics
    name = breaker.name

    def write(kind: str, new_state_code: int, to_state: str, count: int = 1) -> None:
        state = breaker.get_state()
        observer._child(m.cb_state, name).set(new_state_code)
        observer._child(m.cb_timeout, name).set(state["current_timeout_sec"])
        observer._child(m.cb_success_rate, name).set(state["success_rate"])
        if kind == "failure":
            observer._child(m.cb_failures, name).inc()
        elif kind == "fallback":
            observer._child(m.cb_fallbacks, name).inc()
        elif kind == "rejected":
            observer._child(m.cb_rejections, name).inc(count)
        elif kind == "state_change":
            observer._child(m.cb_transitions, name, to_state).inc()

    def listener(event: Any) -> None:
        observer._defer(write, event.kind, event.new_state.code, event.new_state.value,
                        event.count)

    # Publish the initial state so the gauges exist before the first event.
    observer._defer(write, "init", breaker.state.code, breaker.state.value)
    return listener
