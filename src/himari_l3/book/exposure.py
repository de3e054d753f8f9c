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
from typing import NamedTuple

from ..portfolio.budgets import Contrib
from .settings import BookCaps

__all__ = ["TOLERANCE", "TargetStats", "any_breach", "attributed", "breaches",
           "net_per_symbol", "targets_fit"]

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


class TargetStats(NamedTuple):
    """What the caps need of a set of standing targets, computed once per set: the net and
    the gross (strategies' absolute values summed) per symbol, the largest strategy gross,
    the gross of the nets and the net of all."""

    nets: dict[str, float]
    gross: dict[str, float]
    max_strategy: float
    total_gross: float
    total_net: float

    @classmethod
    def of(cls, targets: Contrib) -> TargetStats:
        nets: dict[str, float] = {}
        gross: dict[str, float] = {}
        max_strategy = 0.0
        for strat in sorted(targets):
            g = 0.0
            for sym, usd in targets[strat].items():
                nets[sym] = nets.get(sym, 0.0) + usd
                gross[sym] = gross.get(sym, 0.0) + abs(usd)
                g += abs(usd)
            max_strategy = max(max_strategy, g)
        return cls(nets, gross, max_strategy, sum(abs(x) for x in nets.values()),
                   sum(nets.values()))

    def fit(self, pv: float, caps: BookCaps) -> bool:
        """True when the targets obey every cap at equity ``pv`` (strictly)."""
        return (self.max_strategy <= caps.strategy * pv
                and all(abs(x) <= caps.position * pv for x in self.nets.values())
                and self.total_gross <= min(caps.gross, caps.leverage) * pv
                and abs(self.total_net) <= caps.net * pv)


def targets_fit(targets: Contrib, pv: float, caps: BookCaps) -> bool:
    """True when standing targets obey every cap at equity ``pv`` (strictly: no tolerance).
    The book's quick test before it runs the limits to scale them."""
    return TargetStats.of(targets).fit(pv, caps)


def any_breach(exposure: Mapping[str, float], targets: Contrib, equity: float,
               caps: BookCaps, stats: TargetStats | None = None) -> bool:
    """``bool(breaches(...))``, stopping at the first breach. The strategies are attributed
    only when a bound cannot settle it: a strategy's share is at most its target gross
    times the largest ratio of a symbol's exposure to its target gross."""
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
    if stats is not None:
        ratio = max((abs(x) / stats.gross[s] for s, x in exposure.items()
                     if stats.gross.get(s, 0.0) > 0.0), default=0.0)
        if not _over(stats.max_strategy * ratio, strat_cap):
            return False
    return any(_over(x, strat_cap) for x in attributed(exposure, targets).values())
