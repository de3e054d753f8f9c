r"""The arithmetic behind Phase 2's constraints (``constraints.py``): nets per symbol and the
correlation multipliers.

Contributions are signed USD, ``contrib[strategy][symbol]``; a symbol's net is their sum.
Everything here only ever *multiplies* contributions by factors in [0, 1], so no stage can
flip a direction or grow an exposure. The budgets themselves (strategy, then position on the
*net* after strategies are summed, then portfolio gross; each proportional, each naming the
limit that bound, later ones only shrinking) are the limit objects in ``constraints.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "BudgetResult",
    "Contrib",
    "correlation_multipliers",
    "multi_asset_kelly_ratios",
    "nets",
    "pairwise_penalties",
]

Contrib = dict[str, dict[str, float]]


def nets(contrib: Contrib, symbols: list[str]) -> dict[str, float]:
    """Net signed USD per symbol (summed in sorted strategy order: deterministic)."""
    out = dict.fromkeys(symbols, 0.0)
    for strat in sorted(contrib):
        for sym, usd in contrib[strat].items():
            out[sym] += usd
    return out


@dataclass(frozen=True, slots=True)
class BudgetResult:
    """Contributions after the limits, each limit's factors, and the binding limit per
    symbol; with a book, the commitments as the limits left them and how they scaled them."""

    contrib: Contrib
    factors: dict[str, dict[str, float]]  # limit -> key (strategy or symbol or "all") -> factor
    binding: dict[str, str]  # symbol -> tightest limit ("none" if none bound)
    committed: Contrib = field(default_factory=dict)
    committed_factors: dict[str, dict[str, float]] = field(default_factory=dict)


def correlation_multipliers(  # noqa: PLR0917 - the inputs of one formula
    net: dict[str, float],
    corr: list[list[float]],
    order: list[str],
    edge: dict[str, float],
    vol: dict[str, float | None],
    max_correlation: float,
    penalty_strength: float,
    inverse: Callable[[list[str]], list[list[float]] | None] | None,
) -> tuple[dict[str, float], dict[str, float], str]:
    r"""Per-symbol multipliers in [0, 1] for correlated exposure.

    * pairwise penalty: for each same-direction pair with correlation above
      ``max_correlation``, :math:`\pi_s = \lambda \max_t (\rho_{st}-\rho_{max})/(1-\rho_{max})`;
    * multi-asset Kelly (when ``inverse`` is given and every position has an edge and a
      volatility): with :math:`\Sigma = D R D`, the multi-asset Kelly
      :math:`f = \Sigma^{-1}\mu = D^{-1} R^{-1} D^{-1} \mu` is compared with the per-asset
      Kelly :math:`\mu_s/\sigma_s^2`; the ratio
      :math:`\sigma_s \sum_t (R^{-1})_{st}\,\mu_t/\sigma_t \,/\, \mu_s`, clipped to [0, 1],
      is how much of the single-asset size the joint solution keeps. It never increases a
      size or flips it. ``inverse(live_symbols)`` returns :math:`R^{-1}` for those symbols
      (None if singular).

    ``corr`` is the correlation matrix in the order of ``order``, as nested lists.
    Returns (multiplier per symbol, pairwise penalty per symbol, note on multi-asset Kelly).
    """
    live = [s for s in order if net.get(s, 0.0) != 0.0]
    penalty = pairwise_penalties(net, corr, order, live, max_correlation, penalty_strength)
    mult = {s: 1.0 - penalty[s] for s in order}
    note = "not applicable: fewer than two positions"
    if inverse is not None and len(live) >= 2:
        ratios, note = multi_asset_kelly_ratios(net, live, edge, vol, inverse)
        for s, ratio in ratios.items():
            mult[s] = min(mult[s], ratio)
    return mult, penalty, note


def pairwise_penalties(net: dict[str, float], corr: list[list[float]], order: list[str],
                       live: list[str], max_correlation: float,
                       penalty_strength: float) -> dict[str, float]:
    """The pairwise penalty per symbol (0 for symbols without a position)."""
    idx = {s: i for i, s in enumerate(order)}
    penalty = dict.fromkeys(order, 0.0)
    span = 1.0 - max_correlation
    for s in live:
        worst = 0.0
        row = corr[idx[s]]
        for t in live:
            if t == s or (net[s] > 0) != (net[t] > 0):
                continue
            rho = row[idx[t]]
            if rho > max_correlation:
                worst = max(worst, (rho - max_correlation) / span if span > 0 else 1.0)
        penalty[s] = penalty_strength * min(1.0, worst)
    return penalty


def multi_asset_kelly_ratios(
    net: dict[str, float], live: list[str], edge: dict[str, float],
    vol: dict[str, float | None],
    inverse: Callable[[list[str]], list[list[float]] | None],
) -> tuple[dict[str, float], str]:
    """How much of each live symbol's single-asset Kelly the joint solution keeps (in
    [0, 1]), and a note saying whether it applied."""
    sig = [vol.get(s) for s in live]
    mus = [edge.get(s, math.nan) for s in live]
    if any(v is None or v <= 0 for v in sig) or not all(math.isfinite(m) and m > 0
                                                        for m in mus):
        return {}, "not applicable: a position lacks a positive edge or a volatility"
    r_inv = inverse(live)
    if r_inv is None:
        return {}, "not applicable: singular correlation"
    d = [float(v) for v in sig if v is not None]
    z = [(m if net[s] > 0 else -m) / dv for m, s, dv in zip(mus, live, d, strict=True)]
    ratios: dict[str, float] = {}
    for i, s in enumerate(live):
        mu_i = z[i] * d[i]
        ratio = d[i] * sum((a * b for a, b in zip(r_inv[i], z, strict=True)), 0.0) / mu_i
        ratios[s] = min(1.0, max(0.0, ratio)) if math.isfinite(ratio) else 1.0
    return ratios, "applied"
