"""Phase 1: one signal in, one explainable, capped position target out.

``calculate_position`` is validate -> run the declared stages in order -> assemble. The stage
order lives here and only here (docs/sizing-math.md, ARCHITECTURE.md)::

    Bayesian Kelly -> conformal -> sentiment -> regime -> cascade -> direction and caps
                   -> execution fields

Each stage returns a `~himari_l3.trace.StageResult`; the decision carries them all in its
typed trace (``decision.trace``), from which the JSON ``diagnostics`` are built.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ._clock import SYSTEM_CLOCK, Clock
from ._exceptions import (
    InvalidCascadeIndicatorsException,
    InvalidOutcomeException,
    InvalidPriceException,
    InvalidSignalException,
    StateRestoreError,
    ValidationError,
)
from ._validate import finite, in_range, nonempty_str, positive
from .config.schema import SizingConfig, parse_config
from .contracts import (
    CascadeIndicators,
    CascadeRecommendation,
    MarketRegime,
    PositionSizingDecision,
    TacticalAction,
    TacticalSignal,
    ValidationStatus,
)
from .events import InputKind, InputRejected, OutcomeLearned, RegimeObserved, SizingDecided
from .observers import NULL_OBSERVER, Observer, resolve_observer
from .sizing.conformal import ConformalScaler
from .sizing.kelly import BayesianKelly
from .sizing.limits import CapsStage, ExecutionStage
from .sizing.regime import RegimeTracker, SymbolRegimeState
from .sizing.stages import (
    CascadeStage,
    ConformalStage,
    KellyStage,
    RegimeStage,
    SentimentStage,
    SizingContext,
    SizingStage,
)
from .trace import ExecutionDetail, LimitName, SizingTrace, StageName, StageResult

__all__ = ["PHASE1_STAGE_ORDER", "Layer3Phase1"]

log = logging.getLogger(__name__)

STATE_VERSION = 1

# The declared order (the assembly below reads stage sizes by position in it).
PHASE1_STAGE_ORDER = (StageName.KELLY, StageName.CONFORMAL, StageName.SENTIMENT,
                      StageName.REGIME, StageName.CASCADE, StageName.CAPS,
                      StageName.EXECUTION)

_MONITOR = CascadeRecommendation.MONITOR
_INPUT_KIND: dict[type[ValidationError], InputKind] = {
    InvalidSignalException: InputKind.SIGNAL,
    InvalidCascadeIndicatorsException: InputKind.CASCADE,
}


class Layer3Phase1:
    """Per-signal position sizer with learned state per strategy x symbol.

    Parameters
    ----------
    portfolio_value : float
        Equity in USD that fractions are taken of (> 0).
    kelly_fraction : float
        Fractional Kelly multiplier (0.25 = quarter Kelly); overrides ``config.kelly.fraction``.
    enable_metrics : bool
        Record metrics with the installed metrics observer (Prometheus, process-wide
        registry) unless ``observer`` is given.
    enable_sentiment : bool
        Apply the direction-aware sentiment stage; overrides ``config.sentiment.enabled``.
    max_position_pct, allow_short : optional overrides of ``config.limits``.
    config : SizingConfig, optional
        The typed sizing configuration (defaults documented in docs/config.md).
    observer : Observer, optional
        Receives every event (decisions, outcomes, regime steps); wins over ``enable_metrics``.
    clock : Clock, optional
        Source of decision timestamps.

    Attributes
    ----------
    stages : list of SizingStage
        The declared stage order (``PHASE1_STAGE_ORDER``).
    """

    def __init__(  # noqa: PLR0913 - the user's documented constructor
        self,
        portfolio_value: float = 100_000.0,
        kelly_fraction: float | None = None,
        enable_metrics: bool = True,
        enable_sentiment: bool | None = None,
        *,
        max_position_pct: float | None = None,
        allow_short: bool | None = None,
        config: SizingConfig | None = None,
        observer: Observer | None = None,
        clock: Clock | None = None,
    ) -> None:
        cfg = config or SizingConfig()
        cfg = _override(cfg, kelly_fraction, enable_sentiment, max_position_pct, allow_short)
        self.portfolio_value = positive(InvalidPriceException, "portfolio_value", portfolio_value)
        self.config = cfg
        self.enable_metrics = enable_metrics
        self.clock = clock or SYSTEM_CLOCK
        self.observer = resolve_observer(observer, enable_metrics)
        self.kelly = BayesianKelly(cfg.kelly)
        self.conformal = ConformalScaler(cfg.conformal)
        self.regimes = RegimeTracker(cfg.regime)
        self._cascade_stage = CascadeStage()
        self.stages: list[SizingStage] = [
            KellyStage(self.kelly), ConformalStage(self.conformal), SentimentStage(),
            RegimeStage(self.regimes, self.observe_regime), self._cascade_stage, CapsStage(),
            ExecutionStage(),
        ]
        if tuple(s.name for s in self.stages) != PHASE1_STAGE_ORDER:
            raise AssertionError("Phase 1 stages out of their declared order")
        # Predictions behind each key's last decision, so an outcome can be scored without
        # the caller repeating them.
        self._last_prediction: dict[tuple[str, str], tuple[float | None, float | None]] = {}
        self.decisions_total = 0

    def apply_config(self, config: SizingConfig) -> None:
        """Swap in a new sizing config; learned state is kept (hot reload)."""
        self.config = config
        self._cascade_stage.clear()
        self.kelly.config = config.kelly
        self.conformal.reconfigure(config.conformal)
        self.regimes.reconfigure(config.regime)

    # ------------------------------------------------------------------ sizing
    def observe_regime(self, symbol: str, regime: MarketRegime,
                       short_regime: MarketRegime | None = None) -> SymbolRegimeState:
        """Advance ``symbol``'s regime hysteresis by one period (Phase 2 calls this once
        per symbol per batch, then sizes with ``observe_regime=False``). ``short_regime``
        is what the short side observes, when it differs."""
        st = self.regimes.observe(symbol, regime, short_regime)
        if self.observer is not NULL_OBSERVER:
            self.observer.emit(RegimeObserved(symbol, st.effective_long, regime,
                                              st.last_change, st.false_flips))
        return st

    def calculate_position(
        self,
        signal: TacticalSignal,
        cascade_indicators: CascadeIndicators,
        current_price: float,
        *,
        current_position_usd: float | None = None,
        portfolio_value: float | None = None,
        observe_regime: bool = True,
    ) -> PositionSizingDecision:
        """Size one signal: validate, run the declared stages in order, assemble the decision.
        Raises the named validation exception on bad input."""
        t0 = time.perf_counter_ns()
        ctx = self._context(signal, cascade_indicators, current_price, current_position_usd,
                            portfolio_value, observe_regime)
        results = []
        for stage in self.stages:
            results.append(stage.apply(ctx))
        return self._assemble(ctx, tuple(results), t0)

    def _context(self, signal: TacticalSignal, cascade_indicators: CascadeIndicators,
                 current_price: float, current_position_usd: float | None,
                 portfolio_value: float | None, observe_regime: bool) -> SizingContext:
        """Validate the inputs into a sizing context (named exceptions, counted)."""
        try:
            self._validate(signal, cascade_indicators)
            price = positive(InvalidPriceException, "current_price", current_price)
            pv = (self.portfolio_value if portfolio_value is None
                  else positive(InvalidPriceException, "portfolio_value", portfolio_value))
            current = (0.0 if current_position_usd is None
                       else finite(InvalidSignalException, "current_position_usd",
                                   current_position_usd))
        except (InvalidSignalException, InvalidCascadeIndicatorsException,
                InvalidPriceException) as err:
            kind = _INPUT_KIND.get(type(err), InputKind.PRICE)
            self.observer.emit(InputRejected(kind, err.field))
            raise
        return SizingContext(signal, cascade_indicators, price, pv, current, observe_regime,
                             self.config)

    @staticmethod
    def _validate(signal: object, cascade: object) -> None:
        if not isinstance(signal, TacticalSignal):
            raise InvalidSignalException("signal", type(signal).__name__, "a TacticalSignal")
        if not isinstance(cascade, CascadeIndicators):
            raise InvalidCascadeIndicatorsException(
                "cascade_indicators", type(cascade).__name__, "a CascadeIndicators")

    def _assemble(self, ctx: SizingContext, results: tuple[StageResult, ...],
                  t0: int) -> PositionSizingDecision:
        """The decision and its typed trace from the stages' results."""
        signal = ctx.signal
        caps = results[-2]
        cas = ctx.cascade
        assert cas is not None and caps.stage is StageName.CAPS
        signed = ctx.signed_usd
        binding = caps.binding
        if signed == 0.0 and signal.action is not TacticalAction.HOLD:
            status = ValidationStatus.REJECT
        elif binding is not LimitName.NONE or cas.recommendation is not _MONITOR:
            status = ValidationStatus.WARN
        else:
            status = ValidationStatus.PASS
        reasons = caps.reasons + results[-1].reasons
        self._last_prediction[(signal.strategy_id, signal.symbol)] = (
            signal.expected_return, signal.predicted_volatility)
        trace = SizingTrace(results, ctx.portfolio_value, ctx.price, ctx.direction,
                            ctx.current_position_usd, binding, signal.signal_strength,
                            signal.timestamp_ns)
        execution = results[-1].detail
        assert isinstance(execution, ExecutionDetail)
        # Stage sizes by position in the declared order (checked in __init__).
        decision = PositionSizingDecision(
            position_size_usd=signed, symbol=signal.symbol, strategy_id=signal.strategy_id,
            timestamp_ns=self.clock.time_ns(), action=signal.action,
            kelly_size_usd=results[0].size_usd, conformal_size_usd=results[1].size_usd,
            sentiment_size_usd=results[2].size_usd, regime_size_usd=results[3].size_usd,
            cascade_size_usd=results[4].size_usd, capped_size_usd=caps.size_usd,
            cascade_risk_score=cas.score, cascade_recommendation=cas.recommendation,
            current_regime=ctx.effective_regime,
            position_size_units=signed / ctx.price,
            stop_loss_price=execution.stop_loss_price,
            take_profit_price=execution.take_profit_price, validation_status=status,
            reason_codes=reasons, latency_ms=(time.perf_counter_ns() - t0) / 1e6,
            trace=trace,
        )
        self.decisions_total += 1
        if self.observer is not NULL_OBSERVER:
            self.observer.emit(SizingDecided(decision))
        return decision

    # ---------------------------------------------------------------- learning
    def update_from_trade_result(
        self,
        strategy_id: str,
        symbol: str,
        realized_return: float,
        *,
        predicted_return: float | None = None,
        predicted_volatility: float | None = None,
    ) -> dict[str, Any]:
        """Learn from a closed trade: ``realized_return`` is its return in its own direction
        (0.012 = +1.2 % profit). Predictions default to those of the key's last decision.
        Returns what the learners now hold for the key."""
        e = InvalidOutcomeException
        try:
            nonempty_str(e, "strategy_id", strategy_id)
            nonempty_str(e, "symbol", symbol)
            r = in_range(e, "realized_return", realized_return, -1.0, 10.0)
            pred_r = (None if predicted_return is None
                      else in_range(e, "predicted_return", predicted_return, -1.0, 1.0))
            pred_v = (None if predicted_volatility is None
                      else positive(e, "predicted_volatility", predicted_volatility, 5.0))
        except InvalidOutcomeException as err:
            self.observer.emit(InputRejected(InputKind.OUTCOME, err.field))
            raise
        last_r, last_v = self._last_prediction.get((strategy_id, symbol), (None, None))
        pred_r = last_r if pred_r is None else pred_r
        pred_v = last_v if pred_v is None else pred_v
        self.kelly.update(strategy_id, symbol, r)
        score = self.conformal.update(strategy_id, r, pred_r, pred_v)
        stats = self.kelly.stats_[(strategy_id, symbol)]
        st = self.conformal.states_[strategy_id]
        learned = {
            "trades": stats.n, "win_rate": stats.wins / stats.n,
            "conformal_score": score, "conformal_multiplier": st.multiplier,
            "conformal_coverage": self.conformal.coverage(strategy_id),
            "conformal_alpha": st.alpha_t, "conformal_samples": len(st.scores),
        }
        if self.observer is not NULL_OBSERVER:
            self.observer.emit(OutcomeLearned(
                strategy_id, symbol, r, stats.n, st.alpha_t, len(st.scores),
                learned["conformal_coverage"]))
        return learned

    def record_outcome(self, strategy_id: str, symbol: str, realized_return: float,
                       **predictions: float | None) -> dict[str, Any]:
        """Alias of :meth:`update_from_trade_result` keyed by strategy and symbol."""
        return self.update_from_trade_result(strategy_id, symbol, realized_return,
                                             **predictions)

    # ------------------------------------------------------------------- state
    def export_state(self) -> dict[str, Any]:
        """Learned state as plain JSON-able data; ``restore_state`` brings it back exactly."""
        return {
            "version": STATE_VERSION,
            "kelly": self.kelly.export_state(),
            "conformal": self.conformal.export_state(),
            "regime": self.regimes.export_state(),
            "last_prediction": {f"{s}\x1f{y}": list(p)
                                for (s, y), p in sorted(self._last_prediction.items())},
            "decisions_total": self.decisions_total,
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise StateRestoreError(
                f"state version was {state.get('version')!r}, expected {STATE_VERSION}")
        try:
            self.kelly.restore_state(state["kelly"])
            self.conformal.restore_state(state["conformal"])
            self.regimes.restore_state(state["regime"])
            self._last_prediction = {
                tuple(k.split("\x1f", 1)): (p[0], p[1])
                for k, p in state["last_prediction"].items()
            }
            self.decisions_total = int(state["decisions_total"])
        except (KeyError, TypeError, ValueError) as err:
            raise StateRestoreError(f"state could not be restored: {err!r}") from err

    def get_state(self) -> dict[str, Any]:
        """Summary for operators (counts, per-key learners)."""
        return {
            "portfolio_value": self.portfolio_value,
            "decisions_total": self.decisions_total,
            "kelly_keys": len(self.kelly.stats_),
            "conformal": {sid: {"samples": len(st.scores), "multiplier": st.multiplier,
                                "coverage": self.conformal.coverage(sid),
                                "alpha": st.alpha_t}
                          for sid, st in sorted(self.conformal.states_.items())},
            "regimes": {sym: {"long": st.effective_long.value,
                              "short": st.effective_short.value,
                              "false_flips": st.false_flips}
                        for sym, st in sorted(self.regimes.states_.items())},
        }


def _override(
    cfg: SizingConfig,
    kelly_fraction: float | None,
    enable_sentiment: bool | None,
    max_position_pct: float | None,
    allow_short: bool | None,
) -> SizingConfig:
    """Apply constructor overrides through pydantic validation (bad values raise)."""
    data = cfg.model_dump()
    if kelly_fraction is not None:
        data["kelly"]["fraction"] = kelly_fraction
    if enable_sentiment is not None:
        data["sentiment"]["enabled"] = enable_sentiment
    if max_position_pct is not None:
        data["limits"]["max_position_pct"] = max_position_pct
    if allow_short is not None:
        data["limits"]["allow_short"] = allow_short
    if data == cfg.model_dump():
        return cfg
    return parse_config(SizingConfig, data)
