r"""Correlation adjustment and hierarchical budgets over per strategy x symbol contributions.

Contributions are signed USD, ``contrib[strategy][symbol]``; a symbol's net is their sum.
Every function here only ever *multiplies* contributions by factors in [0, 1], so no stage
can flip a direction or grow an exposure.

Budget order (each proportional, each naming the limit that bound):

1. **strategy**: a strategy whose gross :math:`\sum_s |c_{k,s}|` exceeds ``max_strategy_pct``
   x PV has all its contributions scaled by the same factor;
2. **position**: a symbol whose net :math:`|\sum_k c_{k,s}|` exceeds ``max_position_pct`` x PV
   has all its contributions scaled (caps apply to the *net*, after strategies are summed);
3. **portfolio**: if the gross of nets :math:`\sum_s |net_s|` exceeds ``max_portfolio_pct``
   x PV, everything is scaled.

Steps 2 and 3 only shrink, so the earlier budgets still hold after them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["BudgetResult", "apply_budgets", "correlation_multipliers", "nets"]

# Scale factors are nudged down by a few ulps so that rounding never leaves a total a hair
# above its cap.
_SAFETY = 1.0 - 1e-12

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
    contrib: Contrib
    factors: dict[str, dict[str, float]]  # limit -> key (strategy or symbol or "all") -> factor
    binding: dict[str, str]  # symbol -> tightest limit ("none" if none bound)


def apply_budgets(
    contrib: Contrib,
    symbols: list[str],
    pv: float,
    max_position_pct: float,
    max_strategy_pct: float,
    max_portfolio_pct: float,
    prior_binding: dict[str, tuple[str, float]] | None = None,
) -> BudgetResult:
    """Scale contributions so every budget holds; see the module docstring."""
    c = {s: dict(row) for s, row in contrib.items()}
    tight: dict[str, tuple[str, float]] = dict(prior_binding or {})

    def bind(sym: str, limit: str, factor: float) -> None:
        if factor < tight.get(sym, ("none", 1.0))[1]:
            tight[sym] = (limit, factor)

    strat_f: dict[str, float] = {}
    cap_s = max_strategy_pct * pv
    for strat in sorted(c):
        gross = sum(abs(x) for x in c[strat].values())
        if gross > cap_s:
            f = cap_s / gross * _SAFETY
            strat_f[strat] = f
            for sym in c[strat]:
                c[strat][sym] *= f
                if c[strat][sym] != 0.0:
                    bind(sym, "strategy", f)

    pos_f: dict[str, float] = {}
    cap_p = max_position_pct * pv
    for sym, net in nets(c, symbols).items():
        if abs(net) > cap_p:
            f = cap_p / abs(net) * _SAFETY
            pos_f[sym] = f
            bind(sym, "position", f)
            for strat in c:
                if sym in c[strat]:
                    c[strat][sym] *= f

    port_f: dict[str, float] = {}
    gross = sum(abs(x) for x in nets(c, symbols).values())
    cap_g = max_portfolio_pct * pv
    if gross > cap_g:
        f = cap_g / gross * _SAFETY
        port_f["all"] = f
        for strat in c:
            for sym in c[strat]:
                c[strat][sym] *= f
        for sym, net in nets(c, symbols).items():
            if net != 0.0:
                bind(sym, "portfolio", f)
    binding = {sym: tight.get(sym, ("none", 1.0))[0] for sym in symbols}
    return BudgetResult(c, {"strategy": strat_f, "position": pos_f, "portfolio": port_f},
                        binding)


def correlation_multipliers(
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
    idx = {s: i for i, s in enumerate(order)}
    live = [s for s in order if net.get(s, 0.0) != 0.0]
    mult = dict.fromkeys(order, 1.0)
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
        mult[s] = 1.0 - penalty[s]
    note = "not applicable: fewer than two positions"
    if inverse is not None and len(live) >= 2:
        sig = [vol.get(s) for s in live]
        mus = [edge.get(s, math.nan) for s in live]
        if any(v is None or v <= 0 for v in sig) or not all(math.isfinite(m) and m > 0
                                                            for m in mus):
            note = "not applicable: a position lacks a positive edge or a volatility"
        else:
            r_inv = inverse(live)
            if r_inv is None:
                note = "not applicable: singular correlation"
            else:
                d = [float(v) for v in sig if v is not None]
                z = [(m if net[s] > 0 else -m) / dv for m, s, dv in zip(mus, live, d,
                                                                        strict=True)]
                for i, s in enumerate(live):
                    mu_i = z[i] * d[i]
                    ratio = d[i] * sum(a * b for a, b in zip(r_inv[i], z, strict=True)) / mu_i
                    ratio = min(1.0, max(0.0, ratio)) if math.isfinite(ratio) else 1.0
                    mult[s] = min(mult[s], ratio)
                note = "applied"
    return mult, penalty, note
