"""What the book reads from the config, as one immutable record (rebuilt on a hot reload)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config.schema import Layer3Config

__all__ = ["LIMIT_HEADROOM", "BookCaps", "BookSettings"]

# Standing targets are sized against equity x (1 - LIMIT_HEADROOM): every target sits 0.1 %
# inside every cap, so that a fee or a small price move does not put a position held at
# its cap over it, which the book would then have to repair with a crumb of an order.
LIMIT_HEADROOM = 0.001


@dataclass(frozen=True, slots=True)
class BookCaps:
    """The whole-book limits, as fractions of equity (``portfolio.*``)."""

    position: float
    strategy: float
    gross: float
    net: float
    leverage: float

    @classmethod
    def from_config(cls, cfg: Layer3Config) -> BookCaps:
        p = cfg.portfolio
        return cls(p.max_position_pct, p.max_strategy_pct, p.max_portfolio_pct,
                   p.max_net_pct, p.max_leverage)


@dataclass(frozen=True, slots=True)
class BookSettings:
    """``book.*`` and ``execution.*`` (docs/config.md), plus the caps and the capital."""

    caps: BookCaps
    capital: float
    target_ttl_ns: int
    max_portfolios: int
    max_targets: int
    intent_ttl_ns: int
    band_pct: float
    band_usd: float
    order_type: str
    time_in_force: str
    limit_offset: float  # fraction (bps / 1e4)
    closed_intents_kept: int

    @classmethod
    def from_config(cls, cfg: Layer3Config) -> BookSettings:
        b, e = cfg.book, cfg.execution
        return cls(BookCaps.from_config(cfg), cfg.portfolio_value,
                   round(b.target_ttl_sec * 1e9), b.max_portfolios, b.max_targets,
                   round(e.intent_ttl_sec * 1e9), e.no_trade_band_pct, e.no_trade_band_usd,
                   e.order_type, e.time_in_force, e.limit_offset_bps / 1e4,
                   e.closed_intents_kept)

    def band(self, equity: float) -> float:
        """The no-trade band in USD: a change smaller than both thresholds is not traded."""
        return max(self.band_pct * max(equity, 0.0), self.band_usd)
