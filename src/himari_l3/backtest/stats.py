r"""Performance statistics of a replay (pure functions over numpy arrays).

Notation: :math:`E_0` initial capital, :math:`E_t` equity after bar :math:`t`'s costs
(:math:`t = 1..n`), :math:`r_t = E_t/E_{t-1} - 1`, :math:`P` periods per year (8760 for hourly
bars of a 24/7 market). Undefined values (zero variance, no drawdown...) are NaN, written
``null`` in JSON.

* total return :math:`R = E_n/E_0 - 1`; annualised :math:`(1+R)^{P/n} - 1`;
* volatility :math:`s\sqrt P` with :math:`s` the sample standard deviation (ddof 1);
* Sharpe :math:`\bar r / s \cdot \sqrt P` (risk-free rate 0);
* Sortino :math:`\bar r / d \cdot \sqrt P`, :math:`d = \sqrt{\tfrac1n\sum \min(r_t,0)^2}`;
* drawdown :math:`D_t = E_t/\max(E_0..E_t) - 1`; max drawdown :math:`\min_t D_t \le 0`;
* Calmar = annualised return / :math:`|\min_t D_t|`;
* turnover per bar = traded notional / equity before costs; total = sum, annualised = mean·P;
* exposure per bar = gross position / equity; average exposure = mean;
* hit rate = share of bars with :math:`r_t > 0` among bars entered with a position;
* significance: :math:`p = (1 + \#\{k: S_k \ge S\})/(N + 1)` over :math:`N` shuffled replays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .data import FloatArray

__all__ = [
    "annualized_return",
    "annualized_volatility",
    "calmar_ratio",
    "drawdown_series",
    "hit_rate",
    "max_drawdown",
    "permutation_p_value",
    "sharpe_ratio",
    "sortino_ratio",
    "summarize",
    "total_return",
]


def total_return(equity: FloatArray, initial: float) -> float:
    """:math:`E_n/E_0 - 1`."""
    return float(equity[-1] / initial - 1.0) if len(equity) else 0.0


def annualized_return(total: float, n_periods: int, periods_per_year: float) -> float:
    """Geometric: :math:`(1+R)^{P/n} - 1` (-1 if the equity was wiped out)."""
    if n_periods <= 0:
        return math.nan
    if total <= -1.0:
        return -1.0
    return float((1.0 + total) ** (periods_per_year / n_periods) - 1.0)


def annualized_volatility(returns: FloatArray, periods_per_year: float) -> float:
    """Sample standard deviation (ddof=1) times :math:`\\sqrt P`."""
    if len(returns) < 2:
        return math.nan
    return float(np.std(returns, ddof=1) * math.sqrt(periods_per_year))


def sharpe_ratio(returns: FloatArray, periods_per_year: float) -> float:
    """:math:`\\bar r / s \\cdot \\sqrt P`; NaN with fewer than 2 returns or zero variance."""
    if len(returns) < 2:
        return math.nan
    sd = float(np.std(returns, ddof=1))
    if not sd > 0.0:
        return math.nan
    return float(np.mean(returns)) / sd * math.sqrt(periods_per_year)


def sortino_ratio(returns: FloatArray, periods_per_year: float) -> float:
    """:math:`\\bar r / d \\cdot \\sqrt P` with downside deviation about 0; NaN if no loss."""
    if len(returns) < 1:
        return math.nan
    dd = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    if not dd > 0.0:
        return math.nan
    return float(np.mean(returns)) / dd * math.sqrt(periods_per_year)


def drawdown_series(equity: FloatArray, initial: float) -> FloatArray:
    """:math:`E_t / \\max(E_0, \\dots, E_t) - 1` (<= 0)."""
    peak = np.maximum.accumulate(np.concatenate([[initial], equity]))[1:]
    return np.asarray(equity / peak - 1.0, dtype=np.float64)


def max_drawdown(equity: FloatArray, initial: float) -> float:
    """Most negative drawdown (0 if equity never fell below a previous peak)."""
    return float(np.min(drawdown_series(equity, initial))) if len(equity) else 0.0


def calmar_ratio(annual_return: float, max_dd: float) -> float:
    """Annualised return over the absolute max drawdown; NaN without a drawdown."""
    if not max_dd < 0.0 or math.isnan(annual_return):
        return math.nan
    return annual_return / abs(max_dd)


def hit_rate(returns: FloatArray, held: FloatArray) -> float:
    """Share of positive returns among bars entered holding a position (``held`` is the
    gross exposure carried into each bar); NaN if no bar was held."""
    mask = held > 0.0
    n = int(np.count_nonzero(mask))
    return float(np.count_nonzero(returns[mask] > 0.0)) / n if n else math.nan


def permutation_p_value(actual: float, shuffled: Sequence[float]) -> float:
    """:math:`(1 + \\#\\{S_k \\ge S\\})/(N+1)`. A NaN shuffled Sharpe counts as >= (the
    conservative side); a NaN actual Sharpe gives p = 1."""
    n = len(shuffled)
    if math.isnan(actual):
        return 1.0
    ge = sum(1 for s in shuffled if math.isnan(s) or s >= actual)
    return (1.0 + ge) / (n + 1.0)


def summarize(
    equity: FloatArray,
    initial: float,
    turnover: FloatArray,
    exposure: FloatArray,
    periods_per_year: float,
) -> dict[str, Any]:
    """Every headline metric of one replay (see the module docstring)."""
    prev = np.concatenate([[initial], equity[:-1]])
    returns = equity / prev - 1.0
    held = np.concatenate([[0.0], exposure[:-1]])
    n = len(equity)
    tot = total_return(equity, initial)
    ann = annualized_return(tot, n, periods_per_year)
    mdd = max_drawdown(equity, initial)
    return {
        "n_periods": n,
        "periods_per_year": periods_per_year,
        "initial_capital": initial,
        "final_equity": float(equity[-1]) if n else initial,
        "total_return": tot,
        "annualized_return": ann,
        "annualized_volatility": annualized_volatility(returns, periods_per_year),
        "sharpe": sharpe_ratio(returns, periods_per_year),
        "sortino": sortino_ratio(returns, periods_per_year),
        "max_drawdown": mdd,
        "calmar": calmar_ratio(ann, mdd),
        "turnover_total": float(np.sum(turnover)),
        "turnover_annualized": float(np.mean(turnover) * periods_per_year) if n else 0.0,
        "average_exposure": float(np.mean(exposure)) if n else 0.0,
        "hit_rate": hit_rate(returns, held),
    }
