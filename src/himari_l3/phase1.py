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
import math
import time
from typing import Any, SupportsFloat

from ._clock import SYSTEM_CLOCK, Clock
from ._exceptions import (
    InvalidCascadeIndicatorsException,
    InvalidOutcomeException,
    InvalidPriceException,
    InvalidSignalException,
    StateRestoreError,
    ValidationError,
)
from ._validate import MAX_POSITION_USD, equity, in_range, nonempty_str, positive
from ._validate import price as valid_price
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
from .events import (
    InputKind,
    InputRejected,
    LearnedStateEvicted,
    OutcomeLearned,
    RegimeObserved,
    SizingDecided,
)
from .observers import NULL_OBSERVER, Observer, resolve_observer
from .sizing.conformal import ConformalScaler
from .sizing.kelly import BayesianKelly
from .sizing.limits import CapsStage, ExecutionStage
from .sizing.regime import RegimeTracker, SymbolRegimeState
from .sizing.retention import Retention
from .sizing.stages import (
    CascadeStage,
    ConformalStage,
    KellyStage,
    RegimeStage,
    SentimentStage,
    SizingContext,
    SizingStage,
)
from .trace import LimitName, SizingTrace, StageName, StageResult

__all__ = ["PHASE1_STAGE_ORDER", "Layer3Phase1"]

log = logging.getLogger(__name__)

STATE_VERSION = 1
# get_state details at most this many strategies and symbols (the most recently used).
STATE_DETAIL_KEYS = 50

# The declared order (the assembly below reads stage sizes by position in it).
PHASE1_STAGE_ORDER = (StageName.KELLY, StageName.CONFORMAL, StageName.SENTIMENT,
                      StageName.REGIME, StageName.CASCADE, StageName.CAPS,
                      StageName.EXECUTION)

_MONITOR = CascadeRecommendation.MONITOR
_new = tuple.__new__  # the trace record without the constructor call (see sizing/stages.py)
_INPUT_KIND: dict[type[ValidationError], InputKind] = {
    InvalidSignalException: InputKind.SIGNAL,
    InvalidCascadeIndicatorsException: InputKind.CASCADE,
}


class Layer3Phase1:
    """Per-signal position sizer with learned state per strategy x symbol.

    Parameters
    ----------
    portfolio_value : float
        Equity in USD that fractions are taken of (0 < x <= 1e13, like the config's).
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
    stages : tuple of SizingStage
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
        self.portfolio_value = equity(InvalidPriceException, "portfolio_value", portfolio_value)
        self.config = cfg
        self.enable_metrics = enable_metrics
        self.clock = clock or SYSTEM_CLOCK
        self.observer = resolve_observer(observer, enable_metrics)
        self.kelly = BayesianKelly(cfg.kelly)
        self.conformal = ConformalScaler(cfg.conformal)
        self.regimes = RegimeTracker(cfg.regime)
        self._cascade_stage = CascadeStage()
        self.stages: tuple[SizingStage, ...] = (
            KellyStage(self.kelly), ConformalStage(self.conformal), SentimentStage(),
            RegimeStage(self.regimes, self.observe_regime), self._cascade_stage, CapsStage(),
            ExecutionStage(),
        )
        if tuple(s.name for s in self.stages) != PHASE1_STAGE_ORDER:
            raise AssertionError("Phase 1 stages out of their declared order")
        self._applies = tuple(s.apply for s in self.stages)
        # Predictions behind each key's last decision, so an outcome can be scored without
        # the caller repeating them.
        self._last_prediction: dict[tuple[str, str], tuple[float | None, float | None]] = {}
        self.decisions_total = 0
        # Bounded learned state: the least recently used keys beyond the caps are forgotten
        # at the end of each decision, batch or outcome (sizing/retention.py).
        self.retention = Retention(cfg.retention, self._forget_pair, self._forget_strategy,
                                   self._forget_symbol)
        self._touch_pair = self.retention.pairs.touch
        self._touch_strategy = self.retention.strategies.touch

    def apply_config(self, config: SizingConfig) -> None:
        """Swap in a new sizing config; learned state is kept (hot reload)."""
        self.config = config
        self._cascade_stage.clear()
        self.kelly.config = config.kelly
        self.conformal.reconfigure(config.conformal)
        self.regimes.reconfigure(config.regime)
        self.retention.config = config.retention
        self.trim_learned_state()  # a lower cap forgets the excess at once

    # ------------------------------------------------------------------ sizing
    def observe_regime(self, symbol: str, regime: MarketRegime,
                       short_regime: MarketRegime | None = None) -> SymbolRegimeState:
        """Advance ``symbol``'s regime hysteresis by one period (Phase 2 calls this once
        per symbol per batch, then sizes with ``observe_regime=False``). ``short_regime``
        is what the short side observes, when it differs."""
        self.retention.symbols.touch(symbol)
        st = self.regimes.observe(symbol, regime, short_regime)
        if self.observer is not NULL_OBSERVER:
            self.observer.emit(RegimeObserved(symbol, st.effective_long, regime,
                                              st.last_change, st.false_flips))
        return st

    def calculate_position(
        self,
        signal: TacticalSignal,
        cascade_indicators: CascadeIndicators,
        current_price: SupportsFloat,
        *,
        current_position_usd: SupportsFloat | None = None,
        portfolio_value: SupportsFloat | None = None,
        observe_regime: bool = True,
    ) -> PositionSizingDecision:
        """Size one signal: validate, run the declared stages in order, assemble the decision.
        Raises the named validation exception on bad input."""
        t0 = time.perf_counter_ns()
        try:
            self._validate(signal, cascade_indicators)
            price = valid_price(InvalidPriceException, "current_price", current_price)
            pv = (self.portfolio_value if portfolio_value is None
                  else equity(InvalidPriceException, "portfolio_value", portfolio_value))
            current = (0.0 if current_position_usd is None
                       else in_range(InvalidSignalException, "current_position_usd",
                                     current_position_usd, -MAX_POSITION_USD,
                                     MAX_POSITION_USD))
        except (InvalidSignalException, InvalidCascadeIndicatorsException,
                InvalidPriceException) as err:
            kind = _INPUT_KIND.get(type(err), InputKind.PRICE)
            self.observer.emit(InputRejected(kind, err.field))
            raise
        decision = self.size_validated(signal, cascade_indicators, price, pv, current,
                                       observe_regime, t0)
        self.trim_learned_state()
        return decision

    def size_validated(self, signal: TacticalSignal, cascade_indicators: CascadeIndicators,
                       price: float, portfolio_value: float, current_position_usd: float,
                       observe_regime: bool, t0: int) -> PositionSizingDecision:
        """Run the stages on inputs already validated at the edge (``calculate_position``,
        or Phase 2's batch parse: prices in [1e-12, 1e12], records of the right types, the
        equity in (0, 1e13] and held positions within +-1e15 USD, so every output is finite);
        ``t0`` is when the request started
        (``time.perf_counter_ns``), for the decision's latency."""
        ctx = SizingContext(signal, cascade_indicators, price, portfolio_value,
                            current_position_usd, observe_regime, self.config)
        results = tuple([apply(ctx) for apply in self._applies])
        return self._assemble(ctx, results, t0)

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
        signed = ctx.signed_usd
        binding = caps.binding
        if signed == 0.0 and signal.action is not TacticalAction.HOLD:
            status = ValidationStatus.REJECT
        elif binding is not LimitName.NONE or cas.recommendation is not _MONITOR:
            status = ValidationStatus.WARN
        else:
            status = ValidationStatus.PASS
        reasons = caps.reasons + results[-1].reasons
        key = (signal.strategy_id, signal.symbol)
        self._last_prediction[key] = (signal.expected_return, signal.predicted_volatility)
        self._touch_pair(key)
        self._touch_strategy(signal.strategy_id)
        trace = _new(SizingTrace, (results, ctx.portfolio_value, ctx.price, ctx.direction,
                                   ctx.current_position_usd, binding, signal.signal_strength,
                                   signal.timestamp_ns))
        sl, tp = results[-1].detail  # type: ignore[misc]  # the execution stage's prices
        if not math.isfinite(signed):  # unreachable: every stage keeps sizes finite
            raise ValidationError("position_size_usd", signed, "a finite number")
        # Stage sizes by position in the declared order (checked in __init__), the fields in
        # PositionSizingDecision's order, built without its constructor call (the finite
        # check it makes is the one just above).
        decision: PositionSizingDecision = _new(PositionSizingDecision, (
            signed, signal.symbol, signal.strategy_id, self.clock.time_ns(), signal.action,
            results[0].size_usd, results[1].size_usd, results[2].size_usd,
            results[3].size_usd, results[4].size_usd, caps.size_usd, cas.score,
            cas.recommendation, ctx.effective_regime, signed / ctx.price, sl, tp, status,
            reasons, (time.perf_counter_ns() - t0) / 1e6, trace))
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
        self._touch_pair((strategy_id, symbol))
        self._touch_strategy(strategy_id)
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
        self.trim_learned_state()
        return learned

    def record_outcome(self, strategy_id: str, symbol: str, realized_return: float,
                       **predictions: float | None) -> dict[str, Any]:
        """Alias of :meth:`update_from_trade_result` keyed by strategy and symbol."""
        return self.update_from_trade_result(strategy_id, symbol, realized_return,
                                             **predictions)

    # --------------------------------------------------------------- retention
    def trim_learned_state(self) -> None:
        """Forget the least recently used keys beyond ``config.retention``'s caps (called
        at the end of every decision, outcome and batch; Phase 2 calls it after a batch)."""
        evicted = self.retention.trim()
        if evicted is not None and self.observer is not NULL_OBSERVER:
            self.observer.emit(LearnedStateEvicted(evicted.counts()))

    def _forget_pair(self, key: tuple[str, str]) -> None:
        self.kelly.stats_.pop(key, None)
        self._last_prediction.pop(key, None)

    def _forget_strategy(self, strategy_id: str) -> None:
        self.conformal.states_.pop(strategy_id, None)

    def _forget_symbol(self, symbol: str) -> None:
        self.regimes.states_.pop(symbol, None)

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
            "retention": self.retention.export_state(),
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
            self.retention.restore_state(
                state.get("retention"), [*self.kelly.stats_, *self._last_prediction],
                self.conformal.states_, self.regimes.states_)
        except (KeyError, TypeError, ValueError) as err:
            raise StateRestoreError(f"state could not be restored: {err!r}") from err
        self.trim_learned_state()  # a state saved under larger caps

    def get_state(self) -> dict[str, Any]:
        """Summary for operators: counts, the retention caps, and the learners of the
        ``STATE_DETAIL_KEYS`` most recently used strategies and symbols (bounded whatever
        the number of keys; ``export_state`` has them all)."""
        strategies = sorted(s for s in self.retention.strategies.recent(STATE_DETAIL_KEYS)
                            if s in self.conformal.states_)
        symbols = sorted(s for s in self.retention.symbols.recent(STATE_DETAIL_KEYS)
                         if s in self.regimes.states_)
        conformal, regimes = self.conformal.states_, self.regimes.states_
        return {
            "portfolio_value": self.portfolio_value,
            "decisions_total": self.decisions_total,
            "kelly_keys": len(self.kelly.stats_),
            "conformal_strategies": len(conformal),
            "regime_symbols": len(regimes),
            "retention": self.retention.summary(),
            "conformal": {sid: {"samples": len(conformal[sid].scores),
                                "multiplier": conformal[sid].multiplier,
                                "coverage": self.conformal.coverage(sid),
                                "alpha": conformal[sid].alpha_t}
                          for sid in strategies},
            "regimes": {sym: {"long": regimes[sym].effective_long.value,
                              "short": regimes[sym].effective_short.value,
                              "false_flips": regimes[sym].false_flips}
                        for sym in symbols},
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
