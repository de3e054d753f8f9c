r"""Bayesian Kelly base size, learned per strategy x symbol.

Closed forms (no-uncertainty limits, reproduced exactly):

* binary bet, win probability :math:`p`, payoff ratio :math:`b`:
  :math:`f^* = p - (1-p)/b`;
* Gaussian returns, mean :math:`\mu`, standard deviation :math:`\sigma`:
  :math:`f^* = \mu / \sigma^2`.

With parameter uncertainty (docs/sizing-math.md §2):

* the win probability has a Beta posterior whose prior is the signal's confidence worth
  ``prior_strength`` pseudo-trades, updated by realised wins and losses; the size uses the
  penalised estimate :math:`p_{eff} = \bar p - z \cdot \tfrac{1}{2\sqrt{N+1}}` (``N`` = prior
  plus observed trades; :math:`\tfrac12` bounds the Beta standard deviation, so the penalty
  never depends on :math:`\bar p` and the size stays monotone in confidence);
* for a signal with an expected trade return :math:`\mu` and volatility :math:`\sigma` the bet is
  two-point: a wrong call loses about :math:`\sigma`, and the win :math:`g` is what makes the
  expectation equal :math:`\mu`, so :math:`b = (\mu + (1-p)\sigma)/(p\sigma)` and
  :math:`f^* = p\mu / (\mu + (1-p)\sigma)`;
* in the Gaussian model the predictive variance adds the posterior variance of the mean:
  :math:`f = \bar\mu / (\sigma^2 + \sigma^2/N)` with :math:`N = n_0 c + n` (so a signal with
  no confidence gets no size; ``uncertainty_z`` applies to the binary win probability only).

A known expected return :math:`\le 0` is no edge, so no bet, whichever branch applies.

The fraction is multiplied by ``fraction`` (quarter Kelly by default) and by
:math:`1 - w_{risk} \cdot risk\_score`, then clipped to ``[0, max_fraction]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..config.schema import KellyConfig
from ..trace import KellyEstimate

_new = tuple.__new__

__all__ = [
    "BayesianKelly",
    "KellyEstimate",
    "KellyStats",
    "binary_kelly",
    "gaussian_kelly",
    "two_point_kelly",
]


def binary_kelly(p: float, b: float) -> float:
    """Full Kelly fraction of a bet won with probability ``p`` paying ``b`` per unit staked."""
    return p - (1.0 - p) / b


def gaussian_kelly(mu: float, sigma: float) -> float:
    """Full Kelly fraction for returns of mean ``mu`` and standard deviation ``sigma``."""
    return mu / (sigma * sigma)


def two_point_kelly(p: float, mu: float, sigma: float) -> float:
    """Binary Kelly for a trade that loses ``sigma`` when wrong and has expectation ``mu``.

    Equals ``binary_kelly(p, b)`` with ``b = (mu + (1 - p) sigma) / (p sigma)``; it is
    ``p mu / (mu + (1 - p) sigma)`` for ``mu >= 0`` and 0 (no bet) when there is no edge.
    """
    if mu <= 0.0 or p <= 0.0:
        return 0.0
    return p * mu / (mu + (1.0 - p) * sigma)


@dataclass(slots=True)
class KellyStats:
    """Sufficient statistics of one strategy x symbol's realised trades (learned state)."""

    n: int = 0
    wins: int = 0
    sum_return: float = 0.0
    sum_sq_return: float = 0.0
    sum_win: float = 0.0
    sum_loss: float = 0.0

    def update(self, realized_return: float) -> None:
        self.n += 1
        self.sum_return += realized_return
        self.sum_sq_return += realized_return * realized_return
        if realized_return > 0.0:
            self.wins += 1
            self.sum_win += realized_return
        else:
            self.sum_loss += -realized_return

    @property
    def losses(self) -> int:
        return self.n - self.wins

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n, "wins": self.wins, "sum_return": self.sum_return,
            "sum_sq_return": self.sum_sq_return, "sum_win": self.sum_win,
            "sum_loss": self.sum_loss,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KellyStats:
        return cls(int(d["n"]), int(d["wins"]), float(d["sum_return"]),
                   float(d["sum_sq_return"]), float(d["sum_win"]), float(d["sum_loss"]))


class BayesianKelly:
    """Kelly sizing with a posterior per (strategy_id, symbol); see the module docstring."""

    def __init__(self, config: KellyConfig) -> None:
        self.config = config
        self.stats_: dict[tuple[str, str], KellyStats] = {}

    def update(self, strategy_id: str, symbol: str, realized_return: float) -> None:
        """Learn from one closed trade's return in its own direction (profit > 0)."""
        key = (strategy_id, symbol)
        stats = self.stats_.get(key)
        if stats is None:
            stats = self.stats_[key] = KellyStats()
        stats.update(realized_return)

    def estimate(
        self,
        strategy_id: str,
        symbol: str,
        confidence: float,
        risk_score: float,
        expected_return: float | None,
        volatility: float | None,
    ) -> KellyEstimate:
        """Fractional Kelly (fraction of portfolio value, >= 0) for one signal."""
        cfg = self.config
        stats = self.stats_.get((strategy_id, symbol))
        n = stats.n if stats is not None else 0
        n0 = cfg.prior_strength
        wins = stats.wins if stats is not None else 0
        p_bar = (n0 * confidence + wins) / (n0 + n)
        p_eff = p_bar - cfg.uncertainty_z * 0.5 / math.sqrt(n0 + n + 1.0)
        p_eff = min(1.0, max(0.0, p_eff))

        edge = self._posterior_edge(stats, expected_return)
        if cfg.model == "gaussian" and edge is not None and volatility is not None:
            # Predictive variance = return variance + posterior variance of the mean.
            n_eff = n0 * confidence + n
            var = volatility * volatility * (1.0 + (1.0 / n_eff if n_eff > 0 else math.inf))
            full = edge / var if math.isfinite(var) else 0.0
            b = math.nan
        elif edge is not None and volatility is not None:
            full = two_point_kelly(p_eff, edge, volatility)
            stake = p_eff * volatility  # may underflow to 0 for a subnormal p_eff
            b = ((edge + (1.0 - p_eff) * volatility) / stake
                 if stake > 0.0 and edge > 0.0 else 0.0)
        else:
            b = self._payoff_ratio(stats)
            full = binary_kelly(p_eff, b) if p_eff > 0.0 else 0.0
            if edge is not None and edge <= 0.0:
                # A known non-positive expected return is "no edge" even without a
                # volatility to build the two-point bet from: never bet on it.
                full = 0.0
        full = max(0.0, full)
        risk_mult = 1.0 - cfg.risk_weight * risk_score
        raw = cfg.fraction * full * risk_mult
        capped = raw > cfg.max_fraction
        # tuple.__new__: the record without the NamedTuple constructor's call overhead
        # (this runs once per decision).
        return _new(KellyEstimate, (
            cfg.model, p_bar, p_eff, b, edge if edge is not None else math.nan, full,
            risk_mult, min(raw, cfg.max_fraction), capped, n))

    def _posterior_edge(
        self, stats: KellyStats | None, expected_return: float | None
    ) -> float | None:
        """Signal's expected return shrunk toward the realised mean by pseudo-counts."""
        if stats is None or stats.n == 0:
            return expected_return
        if expected_return is None:
            return stats.sum_return / stats.n
        m0 = self.config.payoff_prior_strength
        return (m0 * expected_return + stats.sum_return) / (m0 + stats.n)

    def _payoff_ratio(self, stats: KellyStats | None) -> float:
        """Average win over average loss, with ``default_payoff_ratio`` as the prior."""
        cfg = self.config
        b0 = cfg.default_payoff_ratio
        if stats is None or stats.wins == 0 or stats.losses == 0 or stats.sum_loss <= 0.0:
            return b0
        b_emp = (stats.sum_win / stats.wins) / (stats.sum_loss / stats.losses)
        m0 = cfg.payoff_prior_strength
        return (m0 * b0 + stats.n * b_emp) / (m0 + stats.n)

    def export_state(self) -> dict[str, Any]:
        return {f"{s}\x1f{y}": st.to_dict() for (s, y), st in sorted(self.stats_.items())}

    def restore_state(self, state: dict[str, Any]) -> None:
        restored: dict[tuple[str, str], KellyStats] = {}
        for key, d in state.items():
            strategy_id, _, symbol = key.partition("\x1f")
            restored[(strategy_id, symbol)] = KellyStats.from_dict(d)
        self.stats_ = restored
