"""Layer 1's market data for one tick, read in one round trip.

Prices: one hash (``streams.prices_key``) of symbol → price (``HMGET``). Readings: one hash
per symbol (``streams.cascade_key`` with ``{symbol}``; ``HGETALL``). Both keyed by Layer 1's
symbols (the ones Layer 2's messages carry). The values come back raw; ``layer1.py`` parses
and judges them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from ..config.schema import StreamsConfig

__all__ = ["MarketReader"]


class MarketReader:
    """Reads prices and readings for a tick's symbols."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def read(self, symbols: Sequence[str], config: StreamsConfig) -> tuple[
            dict[str, Any], dict[str, dict[str, str] | None]]:
        """({symbol: raw price or None}, {symbol: decoded readings hash or None})."""
        if not symbols:
            return {}, {}
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(config.prices_key, list(symbols))
            for s in symbols:
                pipe.hgetall(config.cascade_key.format(symbol=s))
            res = await pipe.execute()
        prices = dict(zip(symbols, res[0], strict=True))
        readings: dict[str, dict[str, str] | None] = {}
        for s, h in zip(symbols, res[1:], strict=True):
            readings[s] = ({_text(k): _text(v) for k, v in h.items()} if h else None)
        return prices, readings


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
