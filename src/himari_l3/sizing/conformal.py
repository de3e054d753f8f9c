r"""Online conformal scaling of the size, per strategy.

Non-conformity score of a closed trade: :math:`s = |r - \hat\mu| / \hat\sigma` (realised minus
predicted return, in units of the predicted volatility; ``reference_volatility`` when the
signal gave none). With the last ``n`` scores, the split-conformal quantile at level
:math:`1-\alpha_t` is the :math:`\lceil (n+1)(1-\alpha_t) \rceil`-th smallest score (infinite
if that exceeds ``n``: the interval is unbounded, the size goes to its floor).

The multiplier compares it with the quantile a calibrated Gaussian forecast would give,
:math:`q_{ref} = \Phi^{-1}(1-\alpha/2)`:
:math:`m = \mathrm{clip}(q_{ref}/\hat q, m_{min}, 1)` — wider intervals, smaller size,
monotonically. Below ``min_samples`` scores the multiplier is ``cold_start_factor``.

:math:`\alpha_t` follows adaptive conformal inference (Gibbs & Candès 2021):
:math:`\alpha_{t+1} = \alpha_t + \gamma(\alpha - err_t)`, clipped to [0.001, 0.5], so the
empirical coverage tracks :math:`1-\alpha` under drift.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

from ..config.schema import ConformalConfig

__all__ = ["ConformalScaler", "ConformalState"]


@dataclass(slots=True)
class ConformalState:
    """Learned state of one strategy's conformal window."""

    scores: deque[float]
    alpha_t: float
    covered: int = 0
    total: int = 0
    quantile: float = math.inf
    multiplier: float = field(default=math.nan)
    # The window's scores in ascending order, kept beside ``scores`` (derived, not
    # exported): the quantile is an order statistic, read here without a sort per outcome.
    ordered: list[float] = field(default_factory=list)


class ConformalScaler:
    """Per-strategy online conformal multiplier; see the module docstring."""

    def __init__(self, config: ConformalConfig) -> None:
        self.config = config
        self._q_ref = NormalDist().inv_cdf(1.0 - config.alpha / 2.0)
        self.states_: dict[str, ConformalState] = {}

    def reconfigure(self, config: ConformalConfig) -> None:
        """New parameters, same scores (the window keeps its newest scores if it shrinks)."""
        self.config = config
        self._q_ref = NormalDist().inv_cdf(1.0 - config.alpha / 2.0)
        for st in self.states_.values():
            st.scores = deque(st.scores, maxlen=config.window)
            st.ordered = sorted(st.scores)
            self._refresh(st)

    def _state(self, strategy_id: str) -> ConformalState:
        st = self.states_.get(strategy_id)
        if st is None:
            st = self.states_[strategy_id] = ConformalState(
                deque(maxlen=self.config.window), self.config.alpha
            )
            st.multiplier = self.config.cold_start_factor
        return st

    def multiplier(self, strategy_id: str) -> tuple[float, float, int]:
        """(multiplier, current quantile, number of scores) for the next signal."""
        st = self.states_.get(strategy_id)
        if st is None:
            return self.config.cold_start_factor, math.inf, 0
        return st.multiplier, st.quantile, len(st.scores)

    def update(
        self,
        strategy_id: str,
        realized_return: float,
        predicted_return: float | None,
        predicted_volatility: float | None,
    ) -> float:
        """Add one realised outcome; returns its score."""
        cfg = self.config
        st = self._state(strategy_id)
        scale = predicted_volatility if predicted_volatility else cfg.reference_volatility
        score = abs(realized_return - (predicted_return or 0.0)) / scale
        if len(st.scores) >= cfg.min_samples:
            err = 0.0 if score <= st.quantile else 1.0
            st.total += 1
            st.covered += int(err == 0.0)
            st.alpha_t = min(0.5, max(0.001, st.alpha_t + cfg.aci_gamma * (cfg.alpha - err)))
        if len(st.scores) == st.scores.maxlen:  # the oldest score leaves the window
            del st.ordered[bisect.bisect_left(st.ordered, st.scores[0])]
        st.scores.append(score)
        bisect.insort(st.ordered, score)
        self._refresh(st)
        return score

    def _refresh(self, st: ConformalState) -> None:
        cfg = self.config
        n = len(st.scores)
        if n < cfg.min_samples:
            st.quantile = math.inf
            st.multiplier = cfg.cold_start_factor
            return
        k = math.ceil((n + 1) * (1.0 - st.alpha_t))
        st.quantile = st.ordered[k - 1] if k <= n else math.inf
        if st.quantile <= 0.0:
            st.multiplier = 1.0
        else:
            st.multiplier = min(1.0, max(cfg.min_multiplier, self._q_ref / st.quantile))

    def coverage(self, strategy_id: str) -> float | None:
        """Empirical coverage of the intervals issued so far (None before any)."""
        st = self.states_.get(strategy_id)
        if st is None or st.total == 0:
            return None
        return st.covered / st.total

    def export_state(self) -> dict[str, Any]:
        return {
            sid: {"scores": list(st.scores), "alpha_t": st.alpha_t,
                  "covered": st.covered, "total": st.total}
            for sid, st in sorted(self.states_.items())
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        self.states_ = {}
        for sid, d in state.items():
            st = self._state(sid)
            st.scores.extend(float(x) for x in d["scores"])
            st.ordered = sorted(st.scores)
            st.alpha_t = float(d["alpha_t"])
            st.covered = int(d["covered"])
            st.total = int(d["total"])
            self._refresh(st)
