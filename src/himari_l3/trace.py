"""The vocabulary of a decision's trace: stage names, limit names, reason codes, and the typed,
immutable per-stage records a decision carries.

One vocabulary for Phases 1-3, the metrics and the docs: a limit that binds is a `LimitName`,
a reason attached to a decision is a `ReasonCode`, a sizing step is a `StageName`. All three
are ``StrEnum``s, so they compare equal to (and serialise as) the strings earlier versions
wrote: JSON users see exactly what they saw before.

A Phase 1 decision's trace is a `SizingTrace`: one `StageResult` per stage, in the declared
order, plus the inputs that mattered. The ``diagnostics`` dict that JSON users read is built
from it (`SizingTrace.to_diagnostics`) when asked for, and parsed back by
`SizingTrace.from_diagnostics`, so a decision round-trips through JSON unchanged.

Records here are ``NamedTuple``s: immutable like frozen dataclasses, and several times
cheaper to create on the hot path (a decision makes seven of them).
"""

from __future__ import annotations

import enum
import math
from typing import Any, NamedTuple

from .enums import CascadeRecommendation

__all__ = [
    "CapsDetail",
    "CascadeAssessment",
    "ConformalDetail",
    "ExecutionDetail",
    "KellyEstimate",
    "LimitName",
    "ReasonCode",
    "RegimeDetail",
    "SizingTrace",
    "StageName",
    "StageResult",
]


class StageName(enum.StrEnum):
    """The Phase 1 stages, in their declared order (``phase1.PHASE1_STAGES``)."""

    KELLY = "kelly"
    CONFORMAL = "conformal"
    SENTIMENT = "sentiment"
    REGIME = "regime"
    CASCADE = "cascade"
    CAPS = "caps"
    EXECUTION = "execution"


class LimitName(enum.StrEnum):
    """Which limit or rule bound a size ("none" when nothing did).

    Phase 1 names: the Kelly cap, the per-position cap or the absolute notional cap, a HOLD
    that may not grow, a cascade EXIT, shorting disabled, no edge, below minimum notional.
    Phase 2/3 names: the per-symbol bound (``exit``, ``direction``, ``position``), the
    hierarchical budgets (``strategy``, ``position``, ``portfolio``), the book's caps on
    the net and on leverage (``net``, ``leverage``), and the combined pass that holds them
    all together beside the book's commitments (``combined``).
    """

    NONE = "none"
    KELLY_CAP = "kelly_cap"
    POSITION_CAP = "position_cap"
    MAX_NOTIONAL = "max_notional"
    HOLD_NO_INCREASE = "hold_no_increase"
    CASCADE_EXIT = "cascade_exit"
    SHORT_DISABLED = "short_disabled"
    NO_EDGE = "no_edge"
    MIN_NOTIONAL = "min_notional"
    EXIT = "exit"
    DIRECTION = "direction"
    POSITION = "position"
    STRATEGY = "strategy"
    PORTFOLIO = "portfolio"
    NET = "net"
    LEVERAGE = "leverage"
    COMBINED = "combined"


class ReasonCode(enum.StrEnum):
    """Reasons attached to a decision (``reason_codes``) or to a rejected signal."""

    HOLD = "HOLD"
    CASCADE_EXIT = "CASCADE_EXIT"
    CASCADE_REDUCE_75 = "CASCADE_REDUCE_75"
    CASCADE_REDUCE_50 = "CASCADE_REDUCE_50"
    SHORT_DISABLED = "SHORT_DISABLED"
    NO_EDGE = "NO_EDGE"
    BELOW_MIN_NOTIONAL = "BELOW_MIN_NOTIONAL"
    KELLY_CAP = "KELLY_CAP"
    POSITION_CAP = "POSITION_CAP"
    MAX_NOTIONAL = "MAX_NOTIONAL"
    BRACKET_BEYOND_ZERO = "BRACKET_BEYOND_ZERO"
    NO_VOLATILITY_FOR_BRACKET = "NO_VOLATILITY_FOR_BRACKET"
    # Phase 2: why a signal was left out of a batch.
    INVALID_SIGNAL = "INVALID_SIGNAL"
    MISSING_PRICE = "MISSING_PRICE"
    INVALID_PRICE = "INVALID_PRICE"
    MISSING_CASCADE = "MISSING_CASCADE"
    DUPLICATE_SUPERSEDED = "DUPLICATE_SUPERSEDED"
    FUTURE_TIMESTAMP = "FUTURE_TIMESTAMP"
    # The stream consumer: why a symbol's Layer 1 readings were replaced by the configured
    # policy's (the decision's trace, ``inputs``).
    LAYER1_MISSING = "LAYER1_MISSING"
    LAYER1_STALE = "LAYER1_STALE"
    LAYER1_INVALID = "LAYER1_INVALID"
    LAYER1_INVALID_PRICE = "LAYER1_INVALID_PRICE"


# A cap that bound is also reported as a reason (in this order of precedence).
CAP_REASONS = {
    LimitName.POSITION_CAP: ReasonCode.POSITION_CAP,
    LimitName.MAX_NOTIONAL: ReasonCode.MAX_NOTIONAL,
    LimitName.KELLY_CAP: ReasonCode.KELLY_CAP,
}


class KellyEstimate(NamedTuple):
    """What the Kelly stage computed; the Kelly entry of a decision's trace (immutable).
    ``payoff_ratio`` and ``edge`` are NaN where undefined (no expected return; the Gaussian
    model has no payoff ratio); the JSON ``diagnostics`` show them as null.

    ``full_kelly`` is the full Kelly fraction the size is a fraction of (while exploring, the
    optimistic one). ``edge_std`` is the posterior sd of the edge (predictive model, else
    NaN), ``exploring`` says the size is the exploration floor, ``bound`` names what clipped
    the fraction: ``none``, ``volatility_target`` or ``max_fraction`` (``capped`` for both);
    docs/sizing-math.md §2.
    """

    model: str
    win_prob: float
    win_prob_effective: float
    payoff_ratio: float
    edge: float
    full_kelly: float
    risk_multiplier: float
    fraction: float
    capped: bool
    observations: int
    edge_std: float = math.nan
    exploring: bool = False
    bound: str = "none"


class ConformalDetail(NamedTuple):
    """The conformal quantile (infinite: unbounded, or a cold start) and the window's size."""

    quantile: float
    samples: int


class RegimeDetail(NamedTuple):
    """The regime the signal reported and the one in effect for its side (``MarketRegime``
    members, which are strings)."""

    observed: str
    effective: str


class CascadeAssessment(NamedTuple):
    """Score, recommendation, size multiplier and components; the cascade entry of a
    decision's trace (cached per reading: treat ``components`` as read-only)."""

    score: float
    recommendation: CascadeRecommendation
    multiplier: float
    components: dict[str, float]


class CapsDetail(NamedTuple):
    """The cap in force and the signal's direction rules."""

    cap_usd: float
    cap_limit: LimitName


class ExecutionDetail(NamedTuple):
    stop_loss_price: float | None
    take_profit_price: float | None


Detail = (KellyEstimate | ConformalDetail | RegimeDetail | CascadeAssessment | CapsDetail
          | ExecutionDetail | None)


class StageResult(NamedTuple):
    """One stage's entry in the trace.

    ``size_usd`` is the unsigned size after the stage, ``multiplier`` what the stage applied
    (1.0 for stages that set a size rather than scale it), ``binding`` the limit the stage
    applied (``LimitName.NONE`` if none), ``reasons`` what it adds to the decision's reason
    codes, ``detail`` the stage's own typed record.
    """

    stage: StageName
    size_usd: float
    multiplier: float
    binding: LimitName
    reasons: tuple[ReasonCode, ...]
    detail: Detail


class SizingTrace(NamedTuple):
    """The typed trace of one Phase 1 decision: the stages in order and the inputs used."""

    stages: tuple[StageResult, ...]
    portfolio_value: float
    price: float
    direction: int
    current_position_usd: float
    binding_limit: LimitName
    signal_strength: float | None
    signal_timestamp_ns: int | None

    def stage(self, name: StageName) -> StageResult:
        """The entry of stage ``name`` (every Phase 1 trace has all of them)."""
        for result in self.stages:
            if result.stage is name:
                return result
        raise KeyError(name)

    def to_diagnostics(self) -> dict[str, Any]:
        """The plain-JSON ``diagnostics`` dict of a decision (docs/service.md lists it)."""
        by = {r.stage: r for r in self.stages}
        k = by[StageName.KELLY]
        kd = k.detail
        assert isinstance(kd, KellyEstimate)
        conf = by[StageName.CONFORMAL]
        cd = conf.detail
        assert isinstance(cd, ConformalDetail)
        reg = by[StageName.REGIME]
        rd = reg.detail
        assert isinstance(rd, RegimeDetail)
        cas = by[StageName.CASCADE]
        xd = cas.detail
        assert isinstance(xd, CascadeAssessment)
        caps = by[StageName.CAPS].detail
        assert isinstance(caps, CapsDetail)
        return {
            "portfolio_value": self.portfolio_value, "price": self.price,
            "direction": self.direction, "current_position_usd": self.current_position_usd,
            "kelly": {"model": kd.model, "win_prob": kd.win_prob,
                      "win_prob_effective": kd.win_prob_effective,
                      "payoff_ratio": json_float(kd.payoff_ratio),
                      "edge": json_float(kd.edge),
                      "full_kelly": kd.full_kelly, "risk_multiplier": kd.risk_multiplier,
                      "fraction": kd.fraction, "observations": kd.observations,
                      "edge_std": json_float(kd.edge_std), "exploring": kd.exploring,
                      "bound": kd.bound},
            "conformal": {"multiplier": conf.multiplier, "quantile": json_float(cd.quantile),
                          "samples": cd.samples},
            "sentiment_multiplier": by[StageName.SENTIMENT].multiplier,
            "regime": {"observed": rd.observed, "effective": rd.effective,
                       "multiplier": reg.multiplier},
            "cascade": {"multiplier": cas.multiplier, "components": xd.components},
            "cap_usd": caps.cap_usd, "binding_limit": self.binding_limit.value,
            "signal_strength": self.signal_strength,
            "signal_timestamp_ns": self.signal_timestamp_ns,
        }

    @classmethod
    def from_diagnostics(cls, d: dict[str, Any], sizes: dict[StageName, float],
                         reasons: tuple[str, ...], cascade_score: float,
                         recommendation: CascadeRecommendation, stop_loss: float | None,
                         take_profit: float | None) -> SizingTrace:
        """Rebuild the typed trace from a decision's JSON (``PositionSizingDecision``'s
        ``from_dict``). ``sizes`` are the decision's per-stage sizes."""
        k, c, r, x = d["kelly"], d["conformal"], d["regime"], d["cascade"]
        binding = LimitName(d["binding_limit"])
        codes = tuple(ReasonCode(s) for s in reasons)
        cap_usd = float(d["cap_usd"])
        kelly_binding = LimitName.KELLY_CAP if binding is LimitName.KELLY_CAP else LimitName.NONE
        cap_limit = (LimitName.MAX_NOTIONAL if binding is LimitName.MAX_NOTIONAL
                     else LimitName.POSITION_CAP)
        stages = (
            StageResult(StageName.KELLY, sizes[StageName.KELLY], k["fraction"], kelly_binding,
                        (), KellyEstimate(k["model"], k["win_prob"], k["win_prob_effective"],
                                          _nan(k["payoff_ratio"]), _nan(k["edge"]),
                                          k["full_kelly"], k["risk_multiplier"], k["fraction"],
                                          binding is LimitName.KELLY_CAP,
                                          int(k["observations"]),
                                          # absent from decisions written before issue #15
                                          _nan(k.get("edge_std")),
                                          bool(k.get("exploring", False)),
                                          str(k.get("bound", "none")))),
            StageResult(StageName.CONFORMAL, sizes[StageName.CONFORMAL], c["multiplier"],
                        LimitName.NONE, (),
                        ConformalDetail(_inf(c["quantile"]), int(c["samples"]))),
            StageResult(StageName.SENTIMENT, sizes[StageName.SENTIMENT],
                        d["sentiment_multiplier"], LimitName.NONE, (), None),
            StageResult(StageName.REGIME, sizes[StageName.REGIME], r["multiplier"],
                        LimitName.NONE, (), RegimeDetail(r["observed"], r["effective"])),
            StageResult(StageName.CASCADE, sizes[StageName.CASCADE], x["multiplier"],
                        LimitName.NONE, (),
                        CascadeAssessment(cascade_score, recommendation, x["multiplier"],
                                          dict(x["components"]))),
            StageResult(StageName.CAPS, sizes[StageName.CAPS], 1.0, binding,
                        tuple(s for s in codes if s not in _EXECUTION_REASONS),
                        CapsDetail(cap_usd, cap_limit)),
            StageResult(StageName.EXECUTION, sizes[StageName.CAPS], 1.0, LimitName.NONE,
                        tuple(s for s in codes if s in _EXECUTION_REASONS),
                        ExecutionDetail(stop_loss, take_profit)),
        )
        return cls(stages, float(d["portfolio_value"]), float(d["price"]), int(d["direction"]),
                   float(d["current_position_usd"]), binding, d["signal_strength"],
                   d["signal_timestamp_ns"])


_EXECUTION_REASONS = frozenset({ReasonCode.BRACKET_BEYOND_ZERO,
                                ReasonCode.NO_VOLATILITY_FOR_BRACKET})


def json_float(x: float) -> float | None:
    """Trace values must be strict JSON (HTTP responses refuse NaN/Infinity): a value that is
    undefined (NaN) or unbounded (an infinite conformal quantile) is recorded as None."""
    return x if math.isfinite(x) else None


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _inf(x: float | None) -> float:
    return math.inf if x is None else float(x)
