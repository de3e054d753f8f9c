r"""The fill model: how much of an order trades at one price observation, at what price and
for what fee. One model for the paper executor and the backtest (``fills.simulator`` runs
it over pending orders; docs/execution.md has the same formulas).

For an eligible order with :math:`R` left, at an observation of price :math:`P` with volume
:math:`V` (base units traded over the interval the observation closes, if known):

.. math::

    C &= \pi \cdot V - Q_{obs}
        &&\text{capacity: participation cap } \pi \text{ less what other orders took}\\
    q &= \lfloor \min(R, C) / \lambda \rfloor \lambda
        &&\text{quantity, down to the lot step } \lambda \text{ (no cap when V is unknown)}\\
    s &= \max\bigl(0,\ s_0 + k\,(q/V)^{\beta} + \sigma z\bigr)
        &&\text{slippage in bps; the impact term only when } V > 0 \text{ is known}\\
    p &= P\,(1 + \text{side} \cdot s / 10^4)
        &&\text{a buy pays more, a sell receives less}\\
    f &= q\,p\,\phi / 10^4 &&\text{fee}

with :math:`s_0` = ``slippage_bps``, :math:`k` = ``impact_bps``, :math:`\beta` =
``impact_exponent`` (0.5: the square-root law of market impact), :math:`\phi` = ``fee_bps``,
:math:`\sigma` = ``slippage_noise_bps`` and :math:`z = \Phi^{-1}(u)`, where :math:`u` comes
from BLAKE2b of (``seed``, the order's ``client_order_id``, the fill's number within the
order). The noise is therefore reproducible and independent of what else is filling or of the
order in which orders are processed: the same seed and orders give the same fills in any
process. Price improvement is never assumed (:math:`s \ge 0`). A zero-volume observation
fills nothing (nothing traded).
"""

from __future__ import annotations

import hashlib
import math
from statistics import NormalDist

from ..config.schema import FillModelConfig

__all__ = ["FillModel"]

_NORMAL = NormalDist()
_TWO_64 = float(2**64)


class FillModel:
    """Prices, fees and capacity of simulated fills (module docstring)."""

    def __init__(self, config: FillModelConfig | None = None) -> None:
        self.config = config if config is not None else FillModelConfig()

    @property
    def latency_ns(self) -> int:
        """The least time between an order's submission and its first fill."""
        return round(self.config.latency_sec * 1e9)

    def capacity(self, volume: float | None) -> float:
        """Base units one observation can fill in total (``inf`` when the volume is
        unknown)."""
        if volume is None:
            return math.inf
        return self.config.max_participation * volume

    def noise(self, client_order_id: str, fill_number: int) -> float:
        """The standard normal draw of a fill: a function of the seed, the order and the
        fill's number only."""
        key = f"{self.config.seed}|{client_order_id}|{fill_number}".encode()
        x = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")
        return _NORMAL.inv_cdf((x + 0.5) / _TWO_64)

    def slippage_bps(self, quantity: float, volume: float | None, client_order_id: str,
                     fill_number: int) -> float:
        """Adverse slippage of a fill of ``quantity`` against an observation of ``volume``."""
        cfg = self.config
        s = cfg.slippage_bps
        if volume is not None and volume > 0.0 and cfg.impact_bps > 0.0:
            s += cfg.impact_bps * (quantity / volume) ** cfg.impact_exponent
        if cfg.slippage_noise_bps > 0.0:
            s += cfg.slippage_noise_bps * self.noise(client_order_id, fill_number)
        return max(0.0, s)

    @staticmethod
    def fill_price(sign: int, reference_price: float, slippage_bps: float) -> float:
        """The execution price: the reference moved against the order by the slippage."""
        return reference_price * (1.0 + sign * slippage_bps / 1e4)

    def fee(self, quantity: float, price: float) -> float:
        """The fee of a fill, in the quote currency."""
        return quantity * price * self.config.fee_bps / 1e4
