"""Data contracts at Layer 3's boundaries (names kept from the user's document).

All records are immutable, validate themselves on construction and round-trip through JSON
(``to_dict`` / ``from_dict``). A bad value raises the contract's exception, naming the field,
the value and the allowed range.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, NamedTuple, Self

from . import _validate as v
from ._exceptions import (
    InvalidCascadeIndicatorsException,
    InvalidRLPredictionException,
    InvalidSignalException,
    ValidationError,
)
from .enums import CascadeRecommendation, MarketRegime, TacticalAction, ValidationStatus
from .trace import SizingTrace, StageName

__all__ = [
    "DECISION_FIELDS",
    "CascadeIndicators",
    "CascadeRecommendation",
    "EnsembleAllocation",
    "MarketRegime",
    "PositionSizingDecision",
    "RLPrediction",
    "TacticalAction",
    "TacticalSignal",
    "ValidationStatus",
]


def _enum(exc: type[ValidationError], name: str, enum_type: type[Any], value: object) -> Any:
    try:
        return enum_type(value)
    except ValueError:
        allowed = ", ".join(m.value for m in enum_type)
        raise exc(name, value, f"one of {allowed}") from None


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


class _Record:
    """JSON round-trip shared by the contracts."""

    _exc: ClassVar[type[ValidationError]] = ValidationError

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        if not isinstance(data, dict):
            raise cls._exc(cls.__name__, data, "a JSON object")
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise cls._exc(unknown[0], data[unknown[0]], f"one of the fields {sorted(names)}")
        try:
            return cls(**data)
        except TypeError as err:  # a required field is missing
            raise cls._exc(cls.__name__, sorted(data), f"all required fields ({err})") from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(_jsonable(k)): _jsonable(x) for k, x in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(x) for x in value]
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


@dataclass(frozen=True, slots=True)
class TacticalSignal(_Record):
    """One Layer 2 decision for a strategy and a symbol.

    ``timestamp_ns`` is when Layer 2 made the decision; None means "not stamped": the engine
    that takes the signal in stamps it with its own (injected) clock, at the edge.

    ``expected_return`` is the expected return *of the trade in the signal's direction* over its
    holding horizon (0.02 = +2 % if the signal is right about direction and size); 0 means
    "no edge" and is a value, not "missing". ``predicted_volatility`` is the standard deviation
    of the asset's return over the same horizon (0.05 = 5 %).
    """

    _exc: ClassVar[type[ValidationError]] = InvalidSignalException

    strategy_id: str
    symbol: str
    action: TacticalAction
    confidence: float
    risk_score: float
    regime: MarketRegime
    timestamp_ns: int | None = None
    expected_return: float | None = None
    predicted_volatility: float | None = None
    signal_strength: float | None = None
    sentiment_score: float | None = None
    sentiment_confidence: float | None = None

    def __post_init__(self) -> None:
        e = InvalidSignalException
        v.nonempty_str(e, "strategy_id", self.strategy_id)
        v.nonempty_str(e, "symbol", self.symbol)
        _set(self, "action", _enum(e, "action", TacticalAction, self.action))
        _set(self, "regime", _enum(e, "regime", MarketRegime, self.regime))
        _set(self, "confidence", v.in_range(e, "confidence", self.confidence, 0.0, 1.0))
        _set(self, "risk_score", v.in_range(e, "risk_score", self.risk_score, 0.0, 1.0))
        ts = self.timestamp_ns
        if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int)
                               or not 0 <= ts <= v.INT64_MAX):
            raise e("timestamp_ns", ts, f"an integer number of nanoseconds, 0 <= "
                    f"timestamp_ns <= {v.INT64_MAX} (int64; or None: stamped with the "
                    "engine's clock when it takes the signal in)")
        _set(self, "expected_return",
             v.optional_in_range(e, "expected_return", self.expected_return, -1.0, 1.0))
        if self.predicted_volatility is not None:
            _set(self, "predicted_volatility",
                 v.positive(e, "predicted_volatility", self.predicted_volatility, 5.0))
        _set(self, "signal_strength",
             v.optional_in_range(e, "signal_strength", self.signal_strength, 0.0, 1.0))
        _set(self, "sentiment_score",
             v.optional_in_range(e, "sentiment_score", self.sentiment_score, 0.0, 1.0))
        _set(self, "sentiment_confidence",
             v.optional_in_range(e, "sentiment_confidence", self.sentiment_confidence, 0.0, 1.0))


@dataclass(frozen=True, slots=True)
class CascadeIndicators(_Record):
    """Layer 1 market-stress readings for one symbol.

    ``funding_rate`` per funding interval as a fraction (0.0001 = 0.01 %); ``oi_change_pct`` the
    open-interest change as a fraction (-0.12 = a 12 % drop); ``volume_ratio`` current volume
    over its average (1 = normal); ``onchain_whale_pressure`` in [0, 1] (1 = heavy whale
    selling); ``exchange_netflow_zscore`` z-score of net inflow to exchanges (positive =
    coins moving onto exchanges, i.e. selling pressure); ``liquidation_volume_24h`` in USD,
    optional, kept for the audit trail.

    ``whale_flow``, optional, is Layer 1's *signed* whale pressure in [-1, 1] (+1 = whales
    buying, -1 = whales selling). When it is given, whale pressure is risk only against a
    trade's direction: selling pressure ``max(0, -whale_flow)`` for a long, buying pressure
    ``max(0, whale_flow)`` for a short (docs/sizing-math.md §6), and
    ``onchain_whale_pressure`` must be the long side's reading, ``max(0, -whale_flow)``
    (`from_whale_flow` builds such a record). Without it, ``onchain_whale_pressure`` is scored
    for either side, as it always was.
    """

    _exc: ClassVar[type[ValidationError]] = InvalidCascadeIndicatorsException

    funding_rate: float
    oi_change_pct: float
    volume_ratio: float
    onchain_whale_pressure: float
    exchange_netflow_zscore: float
    liquidation_volume_24h: float | None = None
    whale_flow: float | None = None

    def __post_init__(self) -> None:
        e = InvalidCascadeIndicatorsException
        _set(self, "funding_rate", v.in_range(e, "funding_rate", self.funding_rate, -1.0, 1.0))
        _set(self, "oi_change_pct", v.in_range(e, "oi_change_pct", self.oi_change_pct, -1.0, 10.0))
        _set(self, "volume_ratio", v.in_range(e, "volume_ratio", self.volume_ratio, 0.0, 1000.0))
        _set(self, "onchain_whale_pressure",
             v.in_range(e, "onchain_whale_pressure", self.onchain_whale_pressure, 0.0, 1.0))
        _set(self, "exchange_netflow_zscore",
             v.in_range(e, "exchange_netflow_zscore", self.exchange_netflow_zscore, -50.0, 50.0))
        _set(self, "liquidation_volume_24h",
             v.optional_in_range(e, "liquidation_volume_24h", self.liquidation_volume_24h,
                                 0.0, 1e13))
        flow = self.whale_flow
        if flow is not None:
            flow = v.in_range(e, "whale_flow", flow, -1.0, 1.0)
            _set(self, "whale_flow", flow)
            selling = max(0.0, -flow)
            if self.onchain_whale_pressure != selling:
                raise e("onchain_whale_pressure", self.onchain_whale_pressure,
                        f"max(0, -whale_flow) = {selling!r} when whale_flow is given (the "
                        "long side's reading)")

    @classmethod
    def from_whale_flow(cls, funding_rate: float, oi_change_pct: float, volume_ratio: float,
                        whale_flow: float, exchange_netflow_zscore: float,
                        liquidation_volume_24h: float | None = None) -> CascadeIndicators:
        """Readings with Layer 1's signed whale pressure (see the class docstring)."""
        selling = max(0.0, -whale_flow) if isinstance(whale_flow, (int, float)) else 0.0
        return cls(funding_rate, oi_change_pct, volume_ratio, selling, exchange_netflow_zscore,
                   liquidation_volume_24h, whale_flow)

    def whale_pressure_against(self, side: int) -> float:
        """Whale pressure against a trade on ``side`` (+1 long, -1 short), in [0, 1]."""
        flow = self.whale_flow
        if flow is None:
            return self.onchain_whale_pressure
        return max(0.0, -flow) if side >= 0 else max(0.0, flow)

    @classmethod
    def calm(cls) -> CascadeIndicators:
        """Readings of a quiet market (score 0): handy for examples and tests."""
        return cls(0.0001, 0.0, 1.0, 0.0, 0.0)


class _DecisionFields(NamedTuple):
    position_size_usd: float
    symbol: str
    strategy_id: str
    timestamp_ns: int
    action: TacticalAction
    kelly_size_usd: float
    conformal_size_usd: float
    sentiment_size_usd: float
    regime_size_usd: float
    cascade_size_usd: float
    capped_size_usd: float
    cascade_risk_score: float
    cascade_recommendation: CascadeRecommendation
    current_regime: MarketRegime
    position_size_units: float
    stop_loss_price: float | None
    take_profit_price: float | None
    validation_status: ValidationStatus
    reason_codes: tuple[str, ...]
    latency_ms: float
    trace: SizingTrace


class PositionSizingDecision(_DecisionFields):
    """Phase 1 output: a signed USD target for one strategy and symbol, with its trace.

    The ``*_size_usd`` fields hold the (unsigned) size after each stage in order; the final
    ``position_size_usd`` is signed (negative = short). ``trace`` is the typed record of
    every stage (`~himari_l3.trace.SizingTrace`); ``diagnostics`` is the same as plain JSON
    (every multiplier, every input that mattered and ``binding_limit``, the cap or rule that
    bound the size). Immutable (a named tuple: Phase 1 builds one per signal, and a frozen
    dataclass costs a microsecond more). Two decisions are equal when their JSON forms are.
    """

    __slots__ = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> PositionSizingDecision:
        self = super().__new__(cls, *args, **kwargs)
        # Safety net on the way out: a NaN or infinite size must never leave Layer 3.
        if not math.isfinite(self.position_size_usd):
            raise ValidationError("position_size_usd", self.position_size_usd, "a finite number")
        return self

    @property
    def diagnostics(self) -> dict[str, Any]:
        """The trace as plain JSON (docs/service.md lists the keys); built on each access."""
        return self.trace.to_diagnostics()

    @property
    def position_pct(self) -> float:
        """Signed size as a fraction of the portfolio value used for sizing."""
        pv = self.trace.portfolio_value
        return self.position_size_usd / pv if pv > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in DECISION_FIELDS:
            out[f] = _jsonable(getattr(self, f))
        out["diagnostics"] = _jsonable(self.diagnostics)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PositionSizingDecision:
        if not isinstance(data, dict):
            raise ValidationError(cls.__name__, data, "a JSON object")
        names = {*DECISION_FIELDS, "diagnostics"}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValidationError(unknown[0], data[unknown[0]],
                                  f"one of the fields {sorted(names)}")
        missing = sorted(names - set(data))
        if missing:
            raise ValidationError(cls.__name__, sorted(data),
                                  f"all required fields (missing {missing})")
        try:
            kw = {f: data[f] for f in DECISION_FIELDS}
            kw["action"] = TacticalAction(kw["action"])
            kw["cascade_recommendation"] = CascadeRecommendation(kw["cascade_recommendation"])
            kw["current_regime"] = MarketRegime(kw["current_regime"])
            kw["validation_status"] = ValidationStatus(kw["validation_status"])
            kw["reason_codes"] = tuple(kw["reason_codes"])
            sizes = {StageName.KELLY: data["kelly_size_usd"],
                     StageName.CONFORMAL: data["conformal_size_usd"],
                     StageName.SENTIMENT: data["sentiment_size_usd"],
                     StageName.REGIME: data["regime_size_usd"],
                     StageName.CASCADE: data["cascade_size_usd"],
                     StageName.CAPS: data["capped_size_usd"]}
            trace = SizingTrace.from_diagnostics(
                data["diagnostics"], sizes, kw["reason_codes"], data["cascade_risk_score"],
                kw["cascade_recommendation"], data["stop_loss_price"],
                data["take_profit_price"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValidationError("diagnostics", data.get("diagnostics"),
                                  f"a decision trace ({err!r})") from None
        return cls(**kw, trace=trace)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PositionSizingDecision):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None  # type: ignore[assignment]


# A decision's JSON fields besides ``diagnostics``, in order.
DECISION_FIELDS = (
    "position_size_usd", "symbol", "strategy_id", "timestamp_ns", "action", "kelly_size_usd",
    "conformal_size_usd", "sentiment_size_usd", "regime_size_usd", "cascade_size_usd",
    "capped_size_usd", "cascade_risk_score", "cascade_recommendation", "current_regime",
    "position_size_units", "stop_loss_price", "take_profit_price", "validation_status",
    "reason_codes", "latency_ms",
)


@dataclass(frozen=True, slots=True)
class RLPrediction(_Record):
    """One validated answer of the RL model for a signal.

    ``optimal_position_pct`` is a signed fraction of the portfolio in [-1, 1].
    """

    _exc: ClassVar[type[ValidationError]] = InvalidRLPredictionException

    optimal_position_pct: float
    confidence: float
    predicted_return: float
    predicted_volatility: float
    model_version: str
    latency_ms: float
    timestamp_ns: int

    def __post_init__(self) -> None:
        e = InvalidRLPredictionException
        _set(self, "optimal_position_pct",
             v.in_range(e, "optimal_position_pct", self.optimal_position_pct, -1.0, 1.0))
        _set(self, "confidence", v.in_range(e, "confidence", self.confidence, 0.0, 1.0))
        _set(self, "predicted_return",
             v.in_range(e, "predicted_return", self.predicted_return, -1.0, 1.0))
        _set(self, "predicted_volatility",
             v.in_range(e, "predicted_volatility", self.predicted_volatility, 0.0, 5.0))
        v.nonempty_str(e, "model_version", self.model_version, 128)
        _set(self, "latency_ms", v.in_range(e, "latency_ms", self.latency_ms, 0.0, 1e7))
        ts = self.timestamp_ns
        if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
            raise e("timestamp_ns", ts, "an integer number of nanoseconds >= 0")


@dataclass(frozen=True, slots=True)
class EnsembleAllocation(_Record):
    """Phase 2/3 output: one signed USD target per symbol, netted across strategies.

    ``breakdown[strategy_id][symbol]`` is each strategy's signed contribution after every
    limit; ``provenance[symbol]`` says which path decided it (``{"path": "rl" | "baseline",
    "reason": ...}``); ``binding_limits[symbol]`` names the limit that bound it (or "none");
    ``rejected_signals`` lists signals dropped by validation, with the reason; ``trace``
    records what each stage did.
    """

    allocations: dict[str, float]
    total_allocated_usd: float
    portfolio_value: float
    utilization_pct: float
    strategy_weights: dict[str, float]
    drifted_strategies: list[str]
    max_drift_pct: float
    correlation_penalties: dict[str, float]
    timestamp_ns: int
    breakdown: dict[str, dict[str, float]] = field(default_factory=dict)
    provenance: dict[str, dict[str, str]] = field(default_factory=dict)
    binding_limits: dict[str, str] = field(default_factory=dict)
    rejected_signals: list[dict[str, Any]] = field(default_factory=list)
    trace: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for sym, usd in self.allocations.items():
            if not math.isfinite(usd):
                raise ValidationError(f"allocations[{sym}]", usd, "a finite number")

    @property
    def num_positions(self) -> int:
        return sum(1 for x in self.allocations.values() if x != 0.0)
