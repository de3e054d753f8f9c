r"""Bayesian Kelly base size, learned per strategy x symbol (docs/sizing-math.md §2).

**predictive** (default): the size is ``fraction`` times the *notional* Kelly optimum of the
posterior predictive distribution of the key's next trade return.

* Edge: a sceptical Normal prior puts the full-Kelly leverage :math:`\mu/\sigma^2` at
  :math:`N(0, \kappa^2)` (``edge_prior_kelly`` :math:`\kappa`), i.e. the per-trade Sharpe at
  :math:`N(0, (\kappa\sigma)^2)`: :math:`n_z = 1/(\kappa\sigma)^2` pseudo-trades of zero
  edge; the signal's expected return :math:`\mu_r` counts as
  :math:`w_r = c \cdot n_r` pseudo-trades (confidence :math:`c`, ``report_strength``
  :math:`n_r`); the key's :math:`n` realised returns count one each. With the signal's
  volatility :math:`\sigma` as the per-trade noise,

  .. math:: N = n_z + w_r + n,\qquad \hat\mu = \frac{w_r\mu_r + \sum r_i}{N},\qquad
            \operatorname{sd}(\mu) = \sigma/\sqrt{N}.

* Predictive distribution: mean :math:`\hat\mu`, variance :math:`\sigma^2(1 + 1/N)` (return
  noise plus the posterior variance of the edge), shape from the learned win rate
  :math:`\hat p = (n_0/2 + \text{wins})/(n_0 + n)` (a symmetric prior worth
  ``prior_strength`` :math:`n_0` trades). Its notional Kelly optimum is the exact two-point
  form :func:`~himari_l3.sizing.kelly_forms.two_point_notional_kelly`.
* Exploration (no permanent lock-out): once a key has outcomes and the signal claims an edge,
  the size is at least :math:`\min(\epsilon, \text{fraction}\cdot f^*(\mu_{up}))` with
  :math:`\mu_{up} = \hat\mu + z_e\,\sigma/\sqrt N` (``exploration_fraction`` :math:`\epsilon`,
  ``exploration_z`` :math:`z_e`): a strategy is dropped only when the posterior is confident
  at level :math:`z_e` that it has no edge. Deterministic in the learned state and the signal.

**binary** (stake as notional) and **gaussian** (:math:`\mu/\sigma^2` trusting the report) are
the earlier models, kept as named options:

* the win probability has a Beta posterior whose prior is the signal's confidence worth
  ``prior_strength`` pseudo-trades; the size uses
  :math:`p_{eff} = \bar p - z \cdot \tfrac{1}{2\sqrt{N+1}}`;
* with an expected return and a volatility the bet is two-point: a wrong call loses
  :math:`\sigma`, so :math:`f^* = p\mu / (\mu + (1-p)\sigma)` — a *stake*, used as the
  notional (a factor :math:`1/\sigma` below the notional optimum);
* gaussian: :math:`f = \bar\mu / (\sigma^2 (1 + 1/(n_0 c + n)))`.

Without a volatility there is no notional scale: every model uses the binary rule (the stake
*is* the notional of a position that can lose all of it), and the predictive model still
explores. A known expected return :math:`\le 0` is no edge, so no bet, in every model.

The fraction is multiplied by ``fraction`` (quarter Kelly by default) and by
:math:`1 - w_{risk}\cdot risk\_score`, bounded by ``volatility_target`` / predictive volatility
when that is set, and clipped to ``[0, max_fraction]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..config.schema import KellyConfig
from ..trace import KellyEstimate
from .kelly_forms import (
    LEVERAGE_BOUND,
    binary_kelly,
    gaussian_kelly,
    two_point_kelly,
    two_point_notional_kelly,
)

__all__ = [
    "LEVERAGE_BOUND",
    "BayesianKelly",
    "KellyEstimate",
    "KellyStats",
    "binary_kelly",
    "gaussian_kelly",
    "two_point_kelly",
    "two_point_notional_kelly",
]


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


_new = tuple.__new__
_EMPTY = KellyStats()  # read-only stand-in for a key without outcomes
_SHAPE_EPS = 1e-9


@dataclass(slots=True)
class _Core:
    """One model's full-Kelly view of a signal, before fraction, exploration and caps."""

    model: str
    win_prob: float
    win_prob_effective: float
    payoff_ratio: float
    edge: float
    full: float
    optimistic: float  # full Kelly at the exploration quantile; 0 = do not explore
    edge_std: float = math.nan
    volatility: float | None = None  # predictive volatility, for the volatility target


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
        stats = self.stats_.get((strategy_id, symbol), _EMPTY)
        if cfg.model == "predictive" and volatility is not None:
            core = self._predictive(stats, confidence, expected_return, volatility)
        else:
            core = self._classic(stats, confidence, expected_return, volatility)
        risk_mult = 1.0 - cfg.risk_weight * risk_score
        exploit = cfg.fraction * core.full
        explore = min(cfg.exploration_fraction, cfg.fraction * core.optimistic)
        full, exploring = core.full, False
        if explore > exploit:
            exploit, full, exploring = explore, core.optimistic, True
        raw = exploit * risk_mult
        bound = "none"
        if (cfg.volatility_target is not None and core.volatility is not None
                and raw * core.volatility > cfg.volatility_target):
            raw, bound = cfg.volatility_target / core.volatility, "volatility_target"
        if raw > cfg.max_fraction:
            raw, bound = cfg.max_fraction, "max_fraction"
        # tuple.__new__: the record without the NamedTuple constructor's call overhead
        # (this runs once per decision); every field is given, in the declared order.
        return _new(KellyEstimate, (
            core.model, core.win_prob, core.win_prob_effective, core.payoff_ratio, core.edge,
            full, risk_mult, raw, bound != "none", stats.n, core.edge_std, exploring, bound))

    # ------------------------------------------------------------------ predictive
    def _predictive(self, stats: KellyStats, confidence: float,
                    expected_return: float | None, volatility: float) -> _Core:
        """Posterior predictive notional Kelly (module docstring)."""
        cfg = self.config
        n = stats.n
        # No expected return: the report is a +-sigma bet won with probability c.
        report = (2.0 * confidence - 1.0) * volatility if expected_return is None \
            else expected_return
        w_report = confidence * cfg.report_strength
        # Prior N(0, kappa^2) on the full-Kelly leverage mu/sigma^2 = N(0, (kappa sigma)^2) on
        # the per-trade Sharpe: 1/(kappa sigma)^2 pseudo-trades of zero edge. Leverage, unlike
        # a per-trade Sharpe, does not depend on the trade's horizon.
        prior_var = (cfg.edge_prior_kelly * volatility) ** 2  # 0 if it underflows: no bet
        big_n = (1.0 / prior_var if prior_var > 0.0 else math.inf) + w_report + n
        edge = (w_report * report + stats.sum_return) / big_n
        edge_std = volatility / math.sqrt(big_n)
        std = volatility * math.sqrt(1.0 + 1.0 / big_n)
        n0 = cfg.prior_strength
        # Kept off 0 and 1 (a tiny prior and all wins would round to 1): a two-point shape
        # needs both points.
        p_up = min(1.0 - _SHAPE_EPS, max(_SHAPE_EPS, (0.5 * n0 + stats.wins) / (n0 + n)))
        full = optimistic = 0.0
        if report > 0.0:  # a report of no edge (<= 0) is never bet on, whatever was learned
            full = two_point_notional_kelly(edge, std, p_up)
            if n > 0:
                optimistic = two_point_notional_kelly(
                    edge + cfg.exploration_z * edge_std, std, p_up)
        up = edge + std * math.sqrt((1.0 - p_up) / p_up)
        down = std * math.sqrt(p_up / (1.0 - p_up)) - edge
        payoff = up / down if down > 0.0 and up > 0.0 else math.nan
        return _Core("predictive", p_up, p_up, payoff, edge, full, optimistic, edge_std, std)

    # ---------------------------------------------------------- binary and gaussian
    def _classic(self, stats: KellyStats, confidence: float,
                 expected_return: float | None, volatility: float | None) -> _Core:
        """The binary (stake as notional) and gaussian models; also the predictive model's
        rule for a signal without a volatility."""
        cfg = self.config
        n = stats.n
        n0 = cfg.prior_strength
        p_bar = (n0 * confidence + stats.wins) / (n0 + n)
        half_sd = 0.5 / math.sqrt(n0 + n + 1.0)
        p_eff = min(1.0, max(0.0, p_bar - cfg.uncertainty_z * half_sd))

        edge = self._posterior_edge(stats, expected_return)
        optimistic = 0.0
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
            reported_no_edge = expected_return is not None and expected_return <= 0.0
            if (edge is not None and edge <= 0.0) or (
                    cfg.model == "predictive" and reported_no_edge):
                # A known non-positive expected return is "no edge" even without a
                # volatility to build the two-point bet from: never bet on it. (The
                # predictive model also refuses a report of no edge that outcomes contradict.)
                full = 0.0
            if cfg.model == "predictive" and n > 0 and not reported_no_edge:
                # The predictive model explores here too, with an optimistic win rate.
                optimistic = max(0.0, binary_kelly(
                    min(1.0, p_bar + cfg.exploration_z * half_sd), b))
        return _Core("binary" if cfg.model == "predictive" else cfg.model, p_bar, p_eff, b,
                     edge if edge is not None else math.nan, max(0.0, full), optimistic)

    def _posterior_edge(
        self, stats: KellyStats, expected_return: float | None
    ) -> float | None:
        """Signal's expected return shrunk toward the realised mean by pseudo-counts."""
        if stats.n == 0:
            return expected_return
        if expected_return is None:
            return stats.sum_return / stats.n
        m0 = self.config.payoff_prior_strength
        return (m0 * expected_return + stats.sum_return) / (m0 + stats.n)

    def _payoff_ratio(self, stats: KellyStats) -> float:
        """Average win over average loss, with ``default_payoff_ratio`` as the prior."""
        cfg = self.config
        b0 = cfg.default_payoff_ratio
        if stats.wins == 0 or stats.losses == 0 or stats.sum_loss <= 0.0:
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
