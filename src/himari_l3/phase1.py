"""Phase 1: one signal in, one explainable, capped position target out.

The stage order lives here and only here (docs/sizing-math.md):

    validate -> Bayesian Kelly -> conformal -> sentiment -> regime -> cascade
             -> direction and caps -> execution fields

Each stage's size and multiplier, and the limit that bound, go into the decision's trace.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from ._clock import SYSTEM_CLOCK, Clock
from ._exceptions import (
    InvalidCascadeIndicatorsException,
    InvalidOutcomeException,
    InvalidPriceException,
    InvalidSignalException,
    StateRestoreError,
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
from .observers import NULL_OBSERVER, Observer
from .sizing.cascade import CascadeAssessment, assess_cascade
from .sizing.conformal import ConformalScaler
from .sizing.kelly import BayesianKelly
from .sizing.regime import RegimeTracker
from .sizing.sentiment import sentiment_multiplier

__all__ = ["Layer3Phase1"]

log = logging.getLogger(__name__)

STATE_VERSION = 1


class Layer3Phase1:
    """Per-signal position sizer with learned state per strategy x symbol.

    Parameters
    ----------
    portfolio_value : float
        Equity in USD that fractions are taken of (> 0).
    kelly_fraction : float
        Fractional Kelly multiplier (0.25 = quarter Kelly); overrides ``config.kelly.fraction``.
    enable_metrics : bool
        Record Prometheus metrics (process-wide default registry unless ``observer`` is given).
    enable_sentiment : bool
        Apply the direction-aware sentiment stage; overrides ``config.sentiment.enabled``.
    max_position_pct, allow_short : optional overrides of ``config.limits``.
    config : SizingConfig, optional
        The typed sizing configuration (defaults documented in docs/config.md).
    observer : Observer, optional
        Receives every decision and outcome (metrics, audit); wins over ``enable_metrics``.
    clock : Clock, optional
        Source of decision timestamps.
    """

    def __init__(
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
        if observer is None and enable_metrics:
            from .observability.prometheus import default_observer

            observer = default_observer()
        self.observer = observer or NULL_OBSERVER
        self.kelly = BayesianKelly(cfg.kelly)
        self.conformal = ConformalScaler(cfg.conformal)
        self.regimes = RegimeTracker(cfg.regime)
        # Predictions behind each key's last decision, so an outcome can be scored without
        # the caller repeating them.
        self._last_prediction: dict[tuple[str, str], tuple[float | None, float | None]] = {}
        self.decisions_total = 0
        self._cascade_cache: dict[int, tuple[CascadeIndicators, CascadeAssessment]] = {}

    def apply_config(self, config: SizingConfig) -> None:
        """Swap in a new sizing config; learned state is kept (hot reload)."""
        self.config = config
        self._cascade_cache = {}
        self.kelly.config = config.kelly
        self.conformal.reconfigure(config.conformal)
        self.regimes.reconfigure(config.regime)

    # ------------------------------------------------------------------ sizing
    def observe_regime(self, symbol: str, regime: MarketRegime,
                       short_regime: MarketRegime | None = None) -> None:
        """Advance ``symbol``'s regime hysteresis by one period (Phase 2 calls this once
        per symbol per batch, then sizes with ``observe_regime=False``). ``short_regime``
        is what the short side observes, when it differs."""
        st = self.regimes.observe(symbol, regime, short_regime)
        if self.observer is not NULL_OBSERVER:
            self.observer.on_regime(symbol, {
                "effective_long": st.effective_long.value, "raw": regime.value,
                "last_change": st.last_change, "false_flips": st.false_flips,
            })

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
        """Size one signal. Raises the named validation exception on bad input."""
        t0 = time.perf_counter_ns()
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
            kind = {InvalidSignalException: "signal",
                    InvalidCascadeIndicatorsException: "cascade"}.get(type(err), "price")
            self.observer.on_invalid_input(kind, err.field)
            raise
        cfg = self.config
        action = signal.action
        direction = action.direction
        vol = signal.predicted_volatility
        reasons: list[str] = []

        # 2. Bayesian Kelly (learned per strategy x symbol)
        k = self.kelly.estimate(signal.strategy_id, signal.symbol, signal.confidence,
                                signal.risk_score, signal.expected_return, vol)
        kelly_usd = k.fraction * pv
        # 3. conformal (per strategy)
        conf_mult, conf_q, conf_n = self.conformal.multiplier(signal.strategy_id)
        conformal_usd = kelly_usd * conf_mult
        # 4. sentiment
        sent_dir = direction if direction != 0 else (1 if current >= 0 else -1)
        sent_mult = sentiment_multiplier(cfg.sentiment, signal.sentiment_score,
                                         signal.sentiment_confidence, sent_dir)
        sentiment_usd = conformal_usd * sent_mult
        # 5. regime (per symbol, hysteresis)
        if observe_regime or signal.symbol not in self.regimes.states_:
            self.observe_regime(signal.symbol, signal.regime)
        reg_state = self.regimes.states_[signal.symbol]
        regime, reg_mult = self.regimes.effective(reg_state, sent_dir)
        regime_usd = sentiment_usd * reg_mult
        # 6. cascade
        # Phase 2 passes one readings object per symbol to every strategy's signal: score
        # it once. Keyed by identity (hashing six floats costs more than scoring); the cache
        # holds the object, so its id cannot be reused while the entry lives.
        hit = self._cascade_cache.get(id(cascade_indicators))
        if hit is not None and hit[0] is cascade_indicators:
            cas = hit[1]
        else:
            if len(self._cascade_cache) >= 64:
                self._cascade_cache.clear()
            cas = assess_cascade(cfg.cascade, cascade_indicators)
            self._cascade_cache[id(cascade_indicators)] = (cascade_indicators, cas)
        cascade_usd = regime_usd * cas.multiplier

        # 7. direction and caps
        lim = cfg.limits
        cap_usd = lim.max_position_pct * pv
        if lim.max_position_usd is not None and lim.max_position_usd < cap_usd:
            cap_usd, cap_name = lim.max_position_usd, "max_notional"
        else:
            cap_name = "position_cap"
        binding = "none"
        if k.capped:
            binding = "kelly_cap"
        if action is TacticalAction.HOLD:
            # HOLD keeps (at most) the current position: risk stages may cut it, never grow it.
            held = abs(current) * reg_mult * cas.multiplier
            size = min(held, abs(current), cap_usd)
            binding = "hold_no_increase" if size == abs(current) else binding
            if size == cap_usd and cap_usd < abs(current):
                binding = cap_name
            side = 1 if current >= 0 else -1
            reasons.append("HOLD")
        else:
            size = cascade_usd
            side = direction
            if size > cap_usd:
                size, binding = cap_usd, cap_name
        if cas.recommendation is CascadeRecommendation.EXIT:
            size, binding = 0.0, "cascade_exit"
            reasons.append("CASCADE_EXIT")
        elif cas.recommendation is not CascadeRecommendation.MONITOR:
            reasons.append("CASCADE_" + cas.recommendation.value.replace("%", ""))
        if direction < 0 and not lim.allow_short:
            # Shorting disabled: a sell means "be flat", never a short.
            size, binding = 0.0, "short_disabled"
            reasons.append("SHORT_DISABLED")
        if direction != 0 and size > 0.0 and k.full_kelly <= 0.0:
            size = 0.0
        if direction != 0 and k.full_kelly <= 0.0:
            reasons.append("NO_EDGE")
            binding = "no_edge" if binding == "none" else binding
        if 0.0 < size < lim.min_position_usd and action is not TacticalAction.HOLD:
            size, binding = 0.0, "min_notional"
            reasons.append("BELOW_MIN_NOTIONAL")
        if binding in ("position_cap", "max_notional", "kelly_cap"):
            reasons.append(binding.upper())
        signed = side * size if size > 0.0 else 0.0

        # 8. execution fields
        sl = tp = None
        if vol is not None and signed != 0.0:
            ex = cfg.execution
            sl_dist, tp_dist = ex.stop_loss_sigma * vol, ex.take_profit_sigma * vol
            if side > 0:
                sl = price * (1.0 - sl_dist) if sl_dist < 1.0 else None
                tp = price * (1.0 + tp_dist)
            else:
                sl = price * (1.0 + sl_dist)
                tp = price * (1.0 - tp_dist) if tp_dist < 1.0 else None
            if sl is None or tp is None:
                reasons.append("BRACKET_BEYOND_ZERO")
        elif signed != 0.0:
            reasons.append("NO_VOLATILITY_FOR_BRACKET")
        if signed == 0.0 and action is not TacticalAction.HOLD:
            status = ValidationStatus.REJECT
        elif binding != "none" or cas.recommendation is not CascadeRecommendation.MONITOR:
            status = ValidationStatus.WARN
        else:
            status = ValidationStatus.PASS

        self._last_prediction[(signal.strategy_id, signal.symbol)] = (
            signal.expected_return, vol)
        diagnostics: dict[str, Any] = {
            "portfolio_value": pv, "price": price, "direction": direction,
            "current_position_usd": current,
            "kelly": {"model": k.model, "win_prob": k.win_prob,
                      "win_prob_effective": k.win_prob_effective,
                      "payoff_ratio": _json_float(k.payoff_ratio), "edge": _json_float(k.edge),
                      "full_kelly": k.full_kelly, "risk_multiplier": k.risk_multiplier,
                      "fraction": k.fraction, "observations": k.observations},
            "conformal": {"multiplier": conf_mult, "quantile": _json_float(conf_q),
                          "samples": conf_n},
            "sentiment_multiplier": sent_mult,
            "regime": {"observed": signal.regime.value, "effective": regime.value,
                       "multiplier": reg_mult},
            "cascade": {"multiplier": cas.multiplier, "components": cas.components},
            "cap_usd": cap_usd, "binding_limit": binding,
            # Carried for the audit trail; Layer 2's confidence already prices it in.
            "signal_strength": signal.signal_strength,
            "signal_timestamp_ns": signal.timestamp_ns,
        }
        latency_ms = (time.perf_counter_ns() - t0) / 1e6
        decision = PositionSizingDecision(
            position_size_usd=signed, symbol=signal.symbol, strategy_id=signal.strategy_id,
            timestamp_ns=self.clock.time_ns(), action=action,
            kelly_size_usd=kelly_usd, conformal_size_usd=conformal_usd,
            sentiment_size_usd=sentiment_usd, regime_size_usd=regime_usd,
            cascade_size_usd=cascade_usd, capped_size_usd=size,
            cascade_risk_score=cas.score, cascade_recommendation=cas.recommendation,
            current_regime=regime, position_size_units=signed / price,
            stop_loss_price=sl, take_profit_price=tp, validation_status=status,
            reason_codes=tuple(reasons), latency_ms=latency_ms, diagnostics=diagnostics,
        )
        self.decisions_total += 1
        self.observer.on_sizing(decision)
        return decision

    @staticmethod
    def _validate(signal: object, cascade: object) -> None:
        if not isinstance(signal, TacticalSignal):
            raise InvalidSignalException("signal", type(signal).__name__, "a TacticalSignal")
        if not isinstance(cascade, CascadeIndicators):
            raise InvalidCascadeIndicatorsException(
                "cascade_indicators", type(cascade).__name__, "a CascadeIndicators")

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
            self.observer.on_invalid_input("outcome", err.field)
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
        self.observer.on_outcome(strategy_id, symbol, r, learned)
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


def _json_float(x: float) -> float | None:
    """Trace values must be strict JSON (HTTP responses refuse NaN/Infinity): a value that
    is undefined (NaN) or unbounded (an infinite conformal quantile) is recorded as None."""
    return x if math.isfinite(x) else None


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
