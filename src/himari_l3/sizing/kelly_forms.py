r"""Closed-form Kelly fractions (no parameter uncertainty); docs/sizing-math.md §2.

* binary bet, won with probability :math:`p`, paying :math:`b` per unit *staked*:
  :math:`f^* = p - (1-p)/b` (a fraction of equity staked);
* Gaussian returns of mean :math:`\mu` and standard deviation :math:`\sigma`:
  :math:`f^* = \mu/\sigma^2` (a notional fraction, to second order);
* a trade with two outcomes, :math:`+u` with probability :math:`p` and :math:`-d` otherwise,
  per unit of *notional*: :math:`f^* = p/d - (1-p)/u`. Written with the distribution's mean
  :math:`m`, standard deviation :math:`s` and skewness
  :math:`\gamma = (1-2p)/\sqrt{p(1-p)}` this is

  .. math:: f^* = \frac{m}{d\,u} = \frac{m}{s^2 - \gamma s m - m^2},

  exact for any two-point distribution, :math:`m/(s^2-m^2) \approx \mu/\sigma^2` for a
  symmetric one, smaller under negative skew (rare large losses), larger under positive skew.
"""

from __future__ import annotations

import math

__all__ = [
    "LEVERAGE_BOUND",
    "binary_kelly",
    "gaussian_kelly",
    "two_point_kelly",
    "two_point_notional_kelly",
]

#: Largest full-Kelly notional fraction reported (100x equity). A fitted distribution with
#: no downside has an unbounded Kelly optimum; every cap is far below this, and the trace
#: must stay finite JSON.
LEVERAGE_BOUND = 100.0


def binary_kelly(p: float, b: float) -> float:
    """Full Kelly fraction of a bet won with probability ``p`` paying ``b`` per unit staked."""
    return p - (1.0 - p) / b


def gaussian_kelly(mu: float, sigma: float) -> float:
    """Full Kelly fraction for returns of mean ``mu`` and standard deviation ``sigma``."""
    return mu / (sigma * sigma)


def two_point_kelly(p: float, mu: float, sigma: float) -> float:
    """Binary Kelly *stake* for a trade that loses ``sigma`` when wrong and has expectation
    ``mu``.

    Equals ``binary_kelly(p, b)`` with ``b = (mu + (1 - p) sigma) / (p sigma)``; it is
    ``p mu / (mu + (1 - p) sigma)`` for ``mu >= 0`` and 0 (no bet) when there is no edge.
    """
    if mu <= 0.0 or p <= 0.0:
        return 0.0
    return p * mu / (mu + (1.0 - p) * sigma)


def two_point_notional_kelly(mean: float, std: float, p_up: float) -> float:
    r"""Growth-optimal *notional* fraction of a trade whose return per unit notional takes
    two values, the upper one with probability ``p_up``, with the given mean and standard
    deviation.

    .. math:: f^* = \frac{m}{s^2 - \gamma s m - m^2},\qquad
              \gamma = \frac{1 - 2p}{\sqrt{p(1-p)}}

    (:math:`= p/d - (1-p)/u` for the two points :math:`m + s\sqrt{(1-p)/p}` and
    :math:`m - s\sqrt{p/(1-p)}`). 0 when ``mean <= 0`` (no edge, no bet);
    :data:`LEVERAGE_BOUND` when the lower point is not a loss (no downside) or the optimum
    exceeds it. ``p_up`` must lie in (0, 1).
    """
    if mean <= 0.0:
        return 0.0
    skew = (1.0 - 2.0 * p_up) / math.sqrt(p_up * (1.0 - p_up))
    denom = std * std - skew * std * mean - mean * mean  # = d * u of the two points
    if denom <= mean / LEVERAGE_BOUND:
        return LEVERAGE_BOUND
    return mean / denom
