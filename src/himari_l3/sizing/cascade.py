r"""Cascade (liquidation-spiral) risk from Layer 1 stress readings.

Five components, each in [0, 1] and saturating at its threshold:
funding :math:`|f|/\theta_f`; open-interest drop :math:`\max(0,-\Delta OI)/\theta_{oi}`;
volume spike :math:`(v-1)/(\theta_v-1)`; whale pressure :math:`w/\theta_w`; exchange netflow
:math:`\max(0,z)/\theta_z`. The score is their weighted sum (weights sum to 1), so it is in
[0, 1]: above ``exit_above`` EXIT (size 0), above ``reduce_75_above`` REDUCE_75% (keep 25 %),
above ``reduce_50_above`` REDUCE_50% (keep 50 %), else MONITOR.

Whale pressure :math:`w` is the reading against the trade's side: ``onchain_whale_pressure``
for either side, unless the readings carry Layer 1's signed ``whale_flow`` :math:`s \in
[-1, 1]`, in which case :math:`w = \max(0, -s)` for a long and :math:`\max(0, s)` for a
short (whales buying are no risk to a long, and are one to a short).
"""

from __future__ import annotations

from ..config.schema import CascadeConfig
from ..contracts import CascadeIndicators, CascadeRecommendation
from ..trace import CascadeAssessment

__all__ = ["CascadeAssessment", "assess_cascade"]

_KEEP = {
    CascadeRecommendation.EXIT: 0.0,
    CascadeRecommendation.REDUCE_75: 0.25,
    CascadeRecommendation.REDUCE_50: 0.5,
    CascadeRecommendation.MONITOR: 1.0,
}


def _unit(x: float) -> float:
    return 0.0 if x <= 0.0 else (1.0 if x >= 1.0 else x)


def assess_cascade(config: CascadeConfig, ind: CascadeIndicators,
                   side: int = 1) -> CascadeAssessment:
    """Score the readings for a trade on ``side`` (+1 long, -1 short; it matters only for
    signed whale readings) and map the score to a recommendation and a size multiplier."""
    t, w = config.thresholds, config.weights
    whale = ind.onchain_whale_pressure if ind.whale_flow is None else (
        ind.whale_pressure_against(side))
    comps = {
        "funding_rate": _unit(abs(ind.funding_rate) / t.funding_rate),
        "oi_drop": _unit(-ind.oi_change_pct / t.oi_drop),
        "volume_ratio": _unit((ind.volume_ratio - 1.0) / (t.volume_ratio - 1.0)),
        "whale_pressure": _unit(whale / t.whale_pressure),
        "netflow_zscore": _unit(ind.exchange_netflow_zscore / t.netflow_zscore),
    }
    score = (w.funding_rate * comps["funding_rate"] + w.oi_drop * comps["oi_drop"]
             + w.volume_ratio * comps["volume_ratio"]
             + w.whale_pressure * comps["whale_pressure"]
             + w.netflow_zscore * comps["netflow_zscore"])
    score = _unit(score)  # guards the last ulp of rounding
    if score > config.exit_above:
        rec = CascadeRecommendation.EXIT
    elif score > config.reduce_75_above:
        rec = CascadeRecommendation.REDUCE_75
    elif score > config.reduce_50_above:
        rec = CascadeRecommendation.REDUCE_50
    else:
        rec = CascadeRecommendation.MONITOR
    return CascadeAssessment(score, rec, _KEEP[rec], comps)
