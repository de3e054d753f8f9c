"""The HTTP routes of the trading states and the price feed.

* ``GET /v1/trading-state?portfolio=`` → ``{"state", "reason", "since", "symbols": {symbol:
  state}, ...}`` (the symbols whose own state is not ACTIVE; a symbol trades under the more
  severe of its own and the portfolio's);
* ``POST /v1/trading-state`` ``{"state": "HALTED"|"REDUCING"|"ACTIVE", "reason", "symbol"?,
  "portfolio"?}`` — the kill switch, reduce-only and resume (bearer token; journaled before
  the reply, so it survives a crash; ``himari-l3 halt|resume`` sends it);
* ``POST /v1/prices`` ``{"prices": {symbol: price}, "volumes"?: {symbol: base units},
  "portfolio"?}`` — marks the book (equity, the trading states' triggers) and, with the paper
  executor (``execution.paper``), fills what it can at these prices.
"""

from __future__ import annotations

import math
from typing import Literal

from fastapi.responses import Response
from pydantic import Field

from ..runtime.jsonio import dumps
from ..runtime.service import SizingService
from .errors import FieldError
from .models import Body, portfolio_field
from .openapi import Api
from .rendering import JSON, DigestHeader, PortfolioQuery, field_errors, render

__all__ = ["PricesRequest", "TradingStateRequest", "trading_routes"]

class TradingStateRequest(Body):
    """``POST /v1/trading-state``: an operator command for a portfolio or one symbol."""

    state: Literal["ACTIVE", "REDUCING", "HALTED"] = Field(
        description="HALTED: the kill switch (flatten or freeze, trading_state.halt_action); "
                    "REDUCING: reduce-only; ACTIVE: resume", examples=["HALTED"])
    reason: str = Field(min_length=1, max_length=200, description="why (journaled)",
                        examples=["exchange incident"])
    symbol: str | None = Field(None, min_length=1, max_length=64,
                               description="one symbol (default: the whole portfolio)")
    portfolio: str = portfolio_field()


class PricesRequest(Body):
    """``POST /v1/prices``: new prices (and optionally the volume traded since the last
    observation, which bounds and prices paper fills) for a portfolio's book."""

    prices: dict[str, float] = Field(min_length=1, max_length=10_000,
                                     description="symbol -> price, > 0",
                                     examples=[{"BTC-USD": 50_000.0}])
    volumes: dict[str, float] | None = Field(
        None, max_length=10_000, description="symbol -> base units traded, >= 0")
    portfolio: str = portfolio_field()


def _check_numbers(body: PricesRequest) -> None:
    for sym, price in body.prices.items():
        if not (math.isfinite(price) and 0.0 < price <= 1e12):
            raise FieldError(("body", "prices", sym),
                             f"prices.{sym} was {price!r}, expected 0 < price <= 1e12", price)
    for sym, vol in (body.volumes or {}).items():
        if not (math.isfinite(vol) and vol >= 0.0):
            raise FieldError(("body", "volumes", sym),
                             f"volumes.{sym} was {vol!r}, expected >= 0", vol)


def trading_routes(api: Api, svc: SizingService) -> None:
    """Install the routes of the module docstring."""

    @api.read("/v1/trading-state", tags=["trading"], query=True,
              ok="the portfolio's trading state, reason and since, its restricted symbols "
                 "and the triggers' levels")
    async def trading_state(portfolio: PortfolioQuery = "default") -> Response:
        """The portfolio's trading state, why and since when, the symbols with a state of
        their own, and the triggers' levels (daily loss, drawdown, limits)."""
        return Response(dumps(await svc.read_trading_state(portfolio)), media_type=JSON)

    @api.write("/v1/trading-state", tags=["trading"])
    async def set_trading_state(body: TradingStateRequest,
                                x_state_digest: DigestHeader = None) -> Response:
        """Halt, reduce-only or resume a portfolio or one symbol (journaled; a resume
        re-bases the daily-loss and drawdown references to the current equity)."""
        with field_errors({}):
            return render(await svc.trading_state(body.portfolio, body.state, body.reason,
                                                  body.symbol, x_state_digest == "1"))

    @api.write("/v1/prices", tags=["trading"])
    async def prices(body: PricesRequest, x_state_digest: DigestHeader = None) -> Response:
        """Mark a portfolio's book to new prices (its equity is judged by the trading
        states); with the paper executor, fill what these prices can."""
        _check_numbers(body)
        with field_errors({}):
            return render(await svc.prices(body.portfolio, dict(body.prices),
                                           None if body.volumes is None else dict(body.volumes),
                                           x_state_digest == "1"))
