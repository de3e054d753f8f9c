"""Phase 1's stages as objects with one contract: ``apply(context) -> StageResult``.

A stage reads the `SizingContext` (the validated inputs and what earlier stages decided),
updates ``context.size`` (the unsigned USD size so far) and returns its `StageResult` for the
trace. Stages exchange only domain types through the context; none imports another. The order
is declared once, in `himari_l3.phase1.Layer3Phase1` (``stages``); a new stage is a class
here (or in its own module) and one entry in that list (see ARCHITECTURE.md).

The math of each stage lives in its own module (``kelly``, ``conformal``, ``sentiment``,
``regime``, ``cascade``, ``limits``); this module adapts them to the contract.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ..trace import (
    CascadeAssessment,
    ConformalDetail,
    KellyEstimate,
    LimitName,
    RegimeDetail,
    StageName,
    StageResult,
)
from .cascade import assess_cascade
from .sentiment import sentiment_multiplier

if TYPE_CHECKING:
    from ..config.schema import SizingConfig
    from ..contracts import CascadeIndicators, MarketRegime, TacticalSignal
    from .conformal import ConformalScaler
    from .kelly import BayesianKelly
    from .regime import RegimeTracker, SymbolRegimeState

__all__ = [
    "CascadeStage",
    "ConformalStage",
    "KellyStage",
    "RegimeStage",
    "SentimentStage",
    "SizingContext",
    "SizingStage",
]

_NO_REASONS: tuple[()] = ()
_NONE = LimitName.NONE
# Records are built with tuple.__new__ on this path: the same immutable NamedTuples without
# their constructor's Python-level call (a decision builds a dozen of them).
_new = tuple.__new__


class SizingContext:
    """One signal's sizing in progress (mutable; lives for one ``calculate_position``).

    Inputs: ``signal``, ``cascade_indicators``, ``price``, ``portfolio_value``,
    ``current_position_usd``, ``observe_regime`` and the ``config`` in force. ``direction``
    is the action's (+1, -1, 0); ``side`` is the side a HOLD keeps (the sign of the current
    position) or the action's direction. Stages update ``size`` and set what later stages
    read, each attribute by the stage that owns it: ``kelly`` (Kelly), ``regime_multiplier``
    and ``effective_regime`` (regime), ``cascade`` (cascade), ``signed_usd`` (caps).
    """

    __slots__ = ("cascade", "cascade_indicators", "config", "current_position_usd",
                 "direction", "effective_regime", "kelly", "observe_regime",
                 "portfolio_value", "price", "regime_multiplier", "side", "signal",
                 "signed_usd", "size")

    def __init__(self, signal: TacticalSignal, cascade_indicators: CascadeIndicators,
                 price: float, portfolio_value: float, current_position_usd: float,
                 observe_regime: bool, config: SizingConfig) -> None:
        self.signal = signal
        self.cascade_indicators = cascade_indicators
        self.price = price
        self.portfolio_value = portfolio_value
        self.current_position_usd = current_position_usd
        self.observe_regime = observe_regime
        self.config = config
        direction = signal.action.direction
        self.direction = direction
        self.side = direction if direction != 0 else (1 if current_position_usd >= 0 else -1)
        self.size = 0.0
        # Set by their stages (unset until then: a stage out of order fails loudly).
        self.kelly: KellyEstimate
        self.regime_multiplier: float
        self.effective_regime: MarketRegime
        self.cascade: CascadeAssessment
        self.signed_usd: float


class SizingStage(Protocol):
    """The contract every Phase 1 stage meets (checked by one contract test over all)."""

    name: StageName

    def apply(self, ctx: SizingContext) -> StageResult:
        """Update ``ctx.size`` (and what later stages read); return the trace entry."""
        ...


class KellyStage:
    """Bayesian Kelly base size, learned per strategy x symbol (docs/sizing-math.md §2)."""

    name = StageName.KELLY

    def __init__(self, kelly: BayesianKelly) -> None:
        self.kelly = kelly

    def apply(self, ctx: SizingContext) -> StageResult:
        s = ctx.signal
        k = self.kelly.estimate(s.strategy_id, s.symbol, s.confidence, s.risk_score,
                                s.expected_return, s.predicted_volatility)
        ctx.kelly = k
        size = ctx.size = k.fraction * ctx.portfolio_value
        return _new(StageResult, (StageName.KELLY, size, k.fraction,
                                  LimitName.KELLY_CAP if k.capped else _NONE, _NO_REASONS, k))


class ConformalStage:
    """Online conformal scaling per strategy (docs/sizing-math.md §3)."""

    name = StageName.CONFORMAL

    def __init__(self, conformal: ConformalScaler) -> None:
        self.conformal = conformal

    def apply(self, ctx: SizingContext) -> StageResult:
        mult, quantile, samples = self.conformal.multiplier(ctx.signal.strategy_id)
        size = ctx.size = ctx.size * mult
        return _new(StageResult, (StageName.CONFORMAL, size, mult, _NONE, _NO_REASONS,
                                  _new(ConformalDetail, (quantile, samples))))


class SentimentStage:
    """Direction-aware sentiment multiplier (docs/sizing-math.md §4)."""

    name = StageName.SENTIMENT

    def apply(self, ctx: SizingContext) -> StageResult:
        s = ctx.signal
        mult = sentiment_multiplier(ctx.config.sentiment, s.sentiment_score,
                                    s.sentiment_confidence, ctx.side)
        size = ctx.size = ctx.size * mult
        return _new(StageResult, (StageName.SENTIMENT, size, mult, _NONE, _NO_REASONS, None))


class RegimeStage:
    """Per-symbol regime multiplier with hysteresis (docs/sizing-math.md §5).

    ``observe`` advances a symbol's hysteresis by one period (Phase 1's ``observe_regime``,
    which also reports it); Phase 2 observes once per symbol per batch and sizes with
    ``observe_regime=False``.
    """

    name = StageName.REGIME

    def __init__(self, tracker: RegimeTracker,
                 observe: Callable[[str, MarketRegime], SymbolRegimeState]) -> None:
        self.tracker = tracker
        self.observe = observe

    def apply(self, ctx: SizingContext) -> StageResult:
        s = ctx.signal
        states = self.tracker.states_
        if ctx.observe_regime or s.symbol not in states:
            self.observe(s.symbol, s.regime)
        regime, mult = self.tracker.effective(states[s.symbol], ctx.side)
        ctx.regime_multiplier = mult
        ctx.effective_regime = regime
        size = ctx.size = ctx.size * mult
        return _new(StageResult, (StageName.REGIME, size, mult, _NONE, _NO_REASONS,
                                  _new(RegimeDetail, (s.regime, regime))))


class CascadeStage:
    """Cascade (liquidation-spiral) risk from Layer 1 readings (docs/sizing-math.md §6).

    Phase 2 passes one readings object per symbol to every strategy's signal: it is scored
    once (per side, for readings with a signed ``whale_flow``, whose score depends on the
    trade's side). The cache is keyed by identity (hashing six floats costs more than
    scoring) and holds the object, so its id cannot be reused while the entry lives.
    """

    name = StageName.CASCADE
    _CACHE_SIZE = 64

    def __init__(self) -> None:
        self._cache: dict[int, tuple[CascadeIndicators, CascadeAssessment]] = {}

    def clear(self) -> None:
        """Forget cached scores (the cascade config changed)."""
        self._cache = {}

    def apply(self, ctx: SizingContext) -> StageResult:
        ind = ctx.cascade_indicators
        # Unsigned readings score the same for both sides: one entry, keyed by identity.
        key = id(ind) if ind.whale_flow is None else id(ind) * 2 + (ctx.side < 0)
        hit = self._cache.get(key)
        if hit is not None and hit[0] is ind:
            cas = hit[1]
        else:
            if len(self._cache) >= self._CACHE_SIZE:
                self._cache.clear()
            cas = assess_cascade(ctx.config.cascade, ind, ctx.side)
            self._cache[key] = (ind, cas)
        ctx.cascade = cas
        size = ctx.size = ctx.size * cas.multiplier
        return _new(StageResult, (StageName.CASCADE, size, cas.multiplier, _NONE, _NO_REASONS,
                                  cas))
