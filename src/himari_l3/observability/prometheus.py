"""The Prometheus adapter of the observer port: typed events in, metric writes out.

This is the only module that knows what an event means as a metric (`Layer3Metrics` names
the families). One :class:`PrometheusObserver` per registry. ``default_observer()`` is the
process-wide one on ``prometheus_client.REGISTRY`` (created once, so several orchestrators
built with ``enable_metrics=True`` share families instead of colliding); the composition root
(``bootstrap``) installs it as what ``enable_metrics=True`` means. Pass
``PrometheusObserver(Layer3Metrics(CollectorRegistry()))`` to isolate an orchestrator.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from prometheus_client import REGISTRY

from .._version import __version__
from ..contracts import MarketRegime
from ..events import (
    AllocationMade,
    BookMarked,
    BookStepped,
    CircuitEvent,
    ConfigReloaded,
    CorrelationUpdated,
    Event,
    FillRecorded,
    HttpRequestServed,
    HybridDecided,
    InputRejected,
    IntentsCancelled,
    Layer1Substituted,
    LearnedStateEvicted,
    LeaseChanged,
    MessageDeadLettered,
    OutcomeLearned,
    PaperFilled,
    PathOutcomeRecorded,
    PositionsReconciled,
    RegimeObserved,
    RLLimitClipped,
    RLPredictionBlended,
    RLRequestsCompleted,
    RLSymbolFellBack,
    SizingDecided,
    StoreFailed,
    StoreWritten,
    StreamBacklog,
    StreamDelivered,
    StreamMessagesHandled,
    StreamRedisFailed,
    StreamTicked,
    TradeClosed,
    TradingStateChanged,
)
from ..observers import Observer
from ..phase1 import PHASE1_STAGE_ORDER
from ..trace import CascadeAssessment, KellyEstimate, LimitName, StageName
from .metrics import Layer3Metrics
from .trading_writers import TradingWriters

__all__ = ["PrometheusObserver", "default_observer"]

log = logging.getLogger(__name__)

_REGIMES = tuple(r.value for r in MarketRegime)
_FLUSH_AT = 512  # wake the background flusher
_MAX_PENDING = 65_536  # flush inline past this (the flusher is starved)
_FLUSH_INTERVAL_SEC = 1.0
_FLUSH_SLICE = 32


class PrometheusObserver(TradingWriters, Observer):
    """Writes Layer 3 metrics for every observed decision, outcome and event."""

    def __init__(self, metrics: Layer3Metrics | None = None) -> None:
        self.metrics = metrics or Layer3Metrics()
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
        self._restricted = {}
        self._flusher: threading.Thread | None = None
        self.metrics.add_pre_collect_hook(self.flush)
        self.metrics.add_pre_collect_hook(self.publish_latest)
        # One writer per event type: the only place that knows what an event means here.
        self._writers: dict[type[Any], Callable[[Any], None]] = {
            SizingDecided: self._write_sizing, InputRejected: self._write_invalid_input,
            OutcomeLearned: self._write_outcome, RegimeObserved: self._write_regime,
            LearnedStateEvicted: self._write_evictions,
            AllocationMade: self._write_allocation,
            CorrelationUpdated: self._write_correlation,
            RLRequestsCompleted: self._write_rl_requests,
            RLPredictionBlended: self._write_rl_blend, RLSymbolFellBack: self._write_rl_fallback,
            RLLimitClipped: self._write_rl_clip, HybridDecided: self._write_hybrid,
            PathOutcomeRecorded: self._write_path_outcome, CircuitEvent: self._write_breaker,
            BookStepped: self._write_book_step,
            FillRecorded: self._write_fill, TradeClosed: self._write_trade,
            PositionsReconciled: self._write_reconcile,
            HttpRequestServed: self._write_http, StoreWritten: self._write_store,
            StoreFailed: self._write_store_failure, ConfigReloaded: self._write_reload,
            StreamTicked: self._write_tick, StreamMessagesHandled: self._write_handled,
            MessageDeadLettered: self._write_dead_letter, StreamBacklog: self._write_backlog,
            StreamRedisFailed: self._write_redis_failure,
            StreamDelivered: self._write_delivery, Layer1Substituted: self._write_layer1,
            LeaseChanged: self._write_lease,
            TradingStateChanged: self._write_trading_state, PaperFilled: self._write_paper_fill,
            IntentsCancelled: self._write_cancelled,
        }

    def _defer(self, fn: Callable[..., None], *args: Any) -> None:
        pending = self._pending
        pending.append((fn, args))
        n = len(pending)
        if n >= _FLUSH_AT:
            if self._flusher is None:
                self._start_flusher()
            if not self._wake.is_set():  # set() takes a lock and notifies: ~1 us per emit
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

    # ------------------------------------------------------------------ the port
    def emit(self, event: Event) -> None:
        """Queue the metric writes of ``event`` (tens of ns on the decision path)."""
        writer = self._writers.get(type(event))
        if writer is not None:
            self._defer(writer, event)

    # ----------------------------------------------------------------- Phase 1
    def _write_sizing(self, event: SizingDecided) -> None:
        m = self.metrics
        decision = event.decision
        trace = decision.trace
        self._child(m.sizing_decisions, decision.action.value,
                    decision.validation_status.value).inc()
        m.sizing_latency.observe(decision.latency_ms / 1e3)
        size = abs(decision.position_size_usd)
        m.position_size_usd.observe(size)
        m.position_size_ratio.observe(size / trace.portfolio_value)
        stages = trace.stages
        kelly = stages[_KELLY].detail
        assert isinstance(kelly, KellyEstimate)
        m.kelly_fraction.observe(kelly.fraction)
        m.kelly_win_probability.observe(kelly.win_prob_effective)
        m.conformal_multiplier.observe(stages[_CONFORMAL].multiplier)
        m.sentiment_multiplier.observe(stages[_SENTIMENT].multiplier)
        m.regime_multiplier.observe(stages[_REGIME].multiplier)
        cascade = stages[_CASCADE].detail
        assert isinstance(cascade, CascadeAssessment)
        sym = m.symbol_label(decision.symbol)
        # Per-symbol "latest value" gauges only matter at scrape time: keep the latest here
        # and publish once per collection (publish_latest), not on every decision.
        self._latest_cascade[sym] = (decision.cascade_risk_score, cascade.components)
        m.cascade_score_hist.observe(decision.cascade_risk_score)
        self._child(m.cascade_recommendations, decision.cascade_recommendation.value).inc()
        limit = trace.binding_limit
        if limit is not LimitName.NONE:
            self._child(m.binding_limits, limit.value).inc()
        for reason in decision.reason_codes:
            self._child(m.reason_codes, str(reason)).inc()

    def _write_invalid_input(self, event: InputRejected) -> None:
        self._child(self.metrics.invalid_inputs, event.kind.value).inc()

    def _write_evictions(self, event: LearnedStateEvicted) -> None:
        for structure, n in event.counts:
            self._child(self.metrics.learned_state_evictions, structure).inc(n)

    def _write_outcome(self, event: OutcomeLearned) -> None:
        m = self.metrics
        strat = m.strategy_label(event.strategy_id)
        self._child(m.outcomes, "win" if event.realized_return > 0 else "loss").inc()
        m.realized_return.observe(event.realized_return)
        self._child(m.kelly_posterior_trades, strat).set(event.trades)
        self._child(m.conformal_alpha, strat).set(event.conformal_alpha)
        self._child(m.conformal_samples, strat).set(event.conformal_samples)
        if event.conformal_coverage is not None:
            self._child(m.conformal_coverage, strat).set(event.conformal_coverage)

    def _write_regime(self, event: RegimeObserved) -> None:
        m = self.metrics
        sym = m.symbol_label(event.symbol)
        self._latest_regime[sym] = event.effective_long.value  # published at collection
        if event.last_change != "none":
            self._child(m.regime_changes, event.last_change).inc()
        prev = self._children.get(("false_flips", sym), 0)
        if event.false_flips > prev:
            m.regime_false_flips.inc(event.false_flips - prev)
        self._children[("false_flips", sym)] = event.false_flips

    # ----------------------------------------------------------- Phase 2 and 3
    def _write_allocation(self, event: AllocationMade) -> None:
        m = self.metrics
        allocation = event.allocation
        self._child(m.allocations, event.phase).inc()
        self._child(m.allocation_latency, event.phase).observe(event.latency_sec)
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
            if limit in _BUDGETS:
                self._child(m.budget_scaledowns, limit).inc()
        for rej in allocation.rejected_signals:
            self._child(m.signals_rejected, str(rej.get("code", "invalid"))).inc()
        remaining = allocation.trace.get("remaining_risk_budget_usd")
        if remaining is not None:
            m.remaining_budget.set(remaining)
        netted = allocation.trace.get("netted_usd", 0.0)
        if netted:
            m.netted_usd.inc(netted)

    def _write_correlation(self, event: CorrelationUpdated) -> None:
        m = self.metrics
        m.correlation_max.set(event.max_abs_correlation)
        m.correlation_observations.set(event.observations)
        m.correlation_shrinkage.set(event.shrinkage)

    def _write_rl_requests(self, event: RLRequestsCompleted) -> None:
        for outcome, n in event.outcomes:
            self._child(self.metrics.rl_requests, outcome).inc(n)

    def _write_rl_blend(self, event: RLPredictionBlended) -> None:
        self.metrics.rl_latency.observe(event.latency_sec)
        self.metrics.rl_blend_weight.observe(event.weight)

    def _write_rl_fallback(self, event: RLSymbolFellBack) -> None:
        self._child(self.metrics.rl_symbol_fallbacks, event.reason).inc()

    def _write_rl_clip(self, event: RLLimitClipped) -> None:
        self._child(self.metrics.rl_limit_clips, event.limit).inc()

    def _write_hybrid(self, event: HybridDecided) -> None:
        m = self.metrics
        self._child(m.decisions, event.path).inc()
        self._child(m.decision_latency, event.path).observe(event.latency_sec)
        m.rl_usage.set(event.rl_usage_ratio)

    def _write_path_outcome(self, event: PathOutcomeRecorded) -> None:
        self._child(self.metrics.path_outcomes, event.path).inc()
        if event.rl_advantage is not None:
            self.metrics.rl_advantage.set(event.rl_advantage)

    def _write_breaker(self, event: CircuitEvent) -> None:
        m = self.metrics
        name = event.name
        self._child(m.cb_state, name).set(event.new_state.code)
        self._child(m.cb_timeout, name).set(event.timeout_sec)
        self._child(m.cb_success_rate, name).set(event.success_rate)
        kind = event.kind
        if kind == "failure":
            self._child(m.cb_failures, name).inc()
        elif kind == "fallback":
            self._child(m.cb_fallbacks, name).inc()
        elif kind == "rejected":
            self._child(m.cb_rejections, name).inc(event.count)
        elif kind == "state_change":
            self._child(m.cb_transitions, name, event.new_state.value).inc()

    # ------------------------------------------------------------------- the book
    def _write_book_step(self, event: BookStepped) -> None:
        m = self.metrics
        self._child(m.book_steps, event.cause).inc()
        for reason in event.issued:
            self._child(m.book_intents, reason).inc()
        for reason in event.dropped:
            self._child(m.book_intents_dropped, reason).inc()
        if event.superseded:
            self._child(m.book_intents_closed, "superseded").inc(event.superseded)
        if event.expired:
            self._child(m.book_intents_closed, "expired").inc(event.expired)
        if event.repair is not None:
            self._child(m.book_repairs, event.repair).inc()
        for limit in event.target_scaledowns:
            self._child(m.book_target_scaledowns, limit).inc()
        self._write_book_marks(event.marks)

    def _write_book_marks(self, event: BookMarked) -> None:
        m = self.metrics
        name = m.portfolio_label(event.portfolio)
        self._child(m.book_equity, name).set(event.equity)
        self._child(m.book_exposure, name, "gross").set(event.gross_ratio)
        self._child(m.book_exposure, name, "net").set(event.net_ratio)
        self._child(m.book_pnl, name, "realized").set(event.realized_pnl)
        self._child(m.book_pnl, name, "unrealized").set(event.unrealized_pnl)
        self._child(m.book_pnl, name, "fees").set(event.fees_paid)
        self._child(m.book_open_intents, name).set(event.open_intents)

    def _write_fill(self, event: FillRecorded) -> None:
        m = self.metrics
        self._child(m.fills, event.side, event.result).inc()
        if event.result == "applied":
            self._child(m.fill_notional, event.side).inc(event.notional_usd)

    def _write_trade(self, event: TradeClosed) -> None:
        m = self.metrics
        self._child(m.closed_trades, "win" if event.realized_pnl > 0 else "loss").inc()
        m.closed_trade_return.observe(event.realized_return)

    def _write_reconcile(self, event: PositionsReconciled) -> None:
        m = self.metrics
        m.reconciliations.inc()
        for field, n in event.differences:
            self._child(m.reconcile_differences, field).inc(n)
        self._child(m.reconcile_difference_usd, m.portfolio_label(event.portfolio)).set(
            event.abs_usd)

    # ----------------------------------------------------------- service and operations
    def _write_http(self, event: HttpRequestServed) -> None:
        self._child(self.metrics.http_requests, event.endpoint, event.code).inc()
        self._child(self.metrics.http_latency, event.endpoint).observe(event.latency_sec)

    def _write_store(self, event: StoreWritten) -> None:
        m = self.metrics
        self._child(m.persistence_writes, event.kind).inc()
        m.persistence_latency.observe(event.latency_sec)
        if event.kind == "snapshot":
            m.state_snapshots.inc()

    def _write_store_failure(self, event: StoreFailed) -> None:
        self._child(self.metrics.persistence_errors, event.operation).inc()

    def _write_reload(self, event: ConfigReloaded) -> None:
        m = self.metrics
        self._child(m.config_reloads, "success" if event.ok else "failure").inc()
        if event.loaded_at_sec is not None:
            m.config_last_reload.set(event.loaded_at_sec)

    # ----------------------------------------------------------------- the stream loop
    def _write_tick(self, event: StreamTicked) -> None:
        self.metrics.stream_tick_latency.observe(event.seconds)
        self.metrics.stream_tick_messages.observe(event.messages)

    def _write_handled(self, event: StreamMessagesHandled) -> None:
        self._child(self.metrics.stream_messages, event.result).inc(event.messages)

    def _write_dead_letter(self, event: MessageDeadLettered) -> None:
        self._child(self.metrics.stream_dead_letters, event.reason).inc()

    def _write_backlog(self, event: StreamBacklog) -> None:
        if event.lag is not None:
            self.metrics.stream_lag.set(event.lag)
        self.metrics.stream_pending.set(event.pending)

    def _write_redis_failure(self, event: StreamRedisFailed) -> None:
        self._child(self.metrics.stream_redis_errors, event.operation).inc()

    def _write_delivery(self, event: StreamDelivered) -> None:
        self.metrics.stream_delivery_latency.observe(event.latency_sec)

    def _write_layer1(self, event: Layer1Substituted) -> None:
        self._child(self.metrics.layer1_substitutions, event.code, event.policy).inc()

    def _write_lease(self, event: LeaseChanged) -> None:
        m = self.metrics
        self._child(m.lease_changes, event.event).inc()
        m.lease_owner.set(1.0 if event.event == "acquired" else 0.0)
        m.lease_epoch.set(event.epoch)


_BUDGETS = frozenset({"position", "strategy", "portfolio", "net", "leverage", "combined"})
# Where each stage sits in a Phase 1 trace (the declared order).
_KELLY, _CONFORMAL, _SENTIMENT, _REGIME, _CASCADE = (
    PHASE1_STAGE_ORDER.index(s) for s in (StageName.KELLY, StageName.CONFORMAL,
                                          StageName.SENTIMENT, StageName.REGIME,
                                          StageName.CASCADE))
_default_lock = threading.Lock()
_default: PrometheusObserver | None = None


def default_observer() -> PrometheusObserver:
    """The process-wide observer on ``prometheus_client.REGISTRY`` (created on first use)."""
    global _default  # noqa: PLW0603 - one observer per process-wide registry
    with _default_lock:
        if _default is None:
            _default = PrometheusObserver(Layer3Metrics(REGISTRY))
        return _default
