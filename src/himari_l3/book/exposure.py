r"""Which whole-book limits a set of exposures breaches.

The book checks its **projected** book — each symbol's position plus its open intents, at
the current marks — against the caps after every change (``rebalance.py``):

* per symbol :math:`|P_s| \le c_{pos} E`;
* per strategy, attributed: a symbol's exposure is shared among the strategies of its
  standing target by their share of its gross, :math:`\sum_s |P_s|\,|T_{k,s}| / \sum_j
  |T_{j,s}| \le c_{strat} E` (exposure of a symbol without a target belongs to no
  strategy: it counts in every other limit);
* gross :math:`\sum_s |P_s| \le c_{gross} E`, net :math:`|\sum_s P_s| \le c_{net} E`,
  leverage :math:`\sum_s |P_s| / E \le c_{lev}`.

With equity :math:`E \le 0` every cap is 0: only a flat book complies. ``TOLERANCE`` is
relative: float rounding of quantity x price, nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..portfolio.budgets import Contrib
from .settings import BookCaps

__all__ = ["TOLERANCE", "any_breach", "attributed", "breaches", "net_per_symbol",
           "targets_fit"]

TOLERANCE = 1e-9


def net_per_symbol(targets: Contrib) -> dict[str, float]:
    """Signed USD per symbol, strategies summed (sorted strategy order: deterministic)."""
    out: dict[str, float] = {}
    for strat in sorted(targets):
        for sym, usd in targets[strat].items():
            out[sym] = out.get(sym, 0.0) + usd
    return out


def attributed(exposure: Mapping[str, float], targets: Contrib) -> dict[str, float]:
    """Each strategy's share of the exposure (see the module docstring)."""
    gross_by_symbol: dict[str, float] = {}
    for row in targets.values():
        for sym, usd in row.items():
            gross_by_symbol[sym] = gross_by_symbol.get(sym, 0.0) + abs(usd)
    out: dict[str, float] = {}
    for strat in sorted(targets):
        total = 0.0
        for sym, usd in targets[strat].items():
            g = gross_by_symbol[sym]
            if g > 0.0:
                total += abs(exposure.get(sym, 0.0)) * abs(usd) / g
        out[strat] = total
    return out


def _over(value: float, cap: float) -> bool:
    return value > cap * (1.0 + TOLERANCE) + TOLERANCE


def breaches(exposure: Mapping[str, float], targets: Contrib, equity: float,
             caps: BookCaps) -> list[str]:
    """The limits ``exposure`` (signed USD per symbol) breaches, as ``"limit"`` or
    ``"limit:key"`` (empty when it complies)."""
    e = max(equity, 0.0)
    out = [f"position:{s}" for s, x in sorted(exposure.items()) if _over(abs(x), caps.position * e)]
    out += [f"strategy:{k}" for k, x in attributed(exposure, targets).items()
            if _over(x, caps.strategy * e)]
    gross = sum(abs(x) for x in exposure.values())
    if _over(gross, caps.gross * e):
        out.append("gross")
    if _over(abs(sum(exposure.values())), caps.net * e):
        out.append("net")
    if _over(gross, caps.leverage * e):
        out.append("leverage")
    return out


def targets_fit(targets: Contrib, pv: float, caps: BookCaps) -> bool:
    """True when standing targets obey every cap at equity ``pv`` (strictly: no tolerance).
    The book's quick test before it runs the limits to scale them."""
    net: dict[str, float] = {}
    for row in targets.values():
        gross = 0.0
        for sym, usd in row.items():
            net[sym] = net.get(sym, 0.0) + usd
            gross += abs(usd)
        if gross > caps.strategy * pv:
            return False
    cap = caps.position * pv
    total = sum(abs(x) for x in net.values())
    return (all(abs(x) <= cap for x in net.values())
            and total <= min(caps.gross, caps.leverage) * pv
            and abs(sum(net.values())) <= caps.net * pv)


def any_breach(exposure: Mapping[str, float], targets: Contrib, equity: float,
               caps: BookCaps) -> bool:
    """``bool(breaches(...))``, stopping at the first breach and attributing exposure to
    strategies only when every other limit holds (the book's check after each plan)."""
    e = max(equity, 0.0)
    pos_cap = caps.position * e
    gross = net = 0.0
    for x in exposure.values():
        if _over(abs(x), pos_cap):
            return True
        gross += abs(x)
        net += x
    if _over(gross, min(caps.gross, caps.leverage) * e) or _over(abs(net), caps.net * e):
        return True
    strat_cap = caps.strategy * e
    return any(_over(x, strat_cap) for x in attributed(exposure, targets).values())
