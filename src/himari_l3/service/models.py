"""Request bodies of the HTTP API (shapes and JSON types; ranges are the contracts' job).

Pydantic checks that each field is there and has the right JSON type (strict: no strings
for numbers, no NaN/Infinity); `to_signal` / `to_cascade` then build the immutable contracts,
whose range checks name the field, the value and the allowed range. Either kind of failure
is a 422 whose ``loc`` is the field's path in the body.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .._exceptions import ValidationError
from ..contracts import CascadeIndicators, TacticalSignal
from .errors import FieldError

__all__ = [
    "AllocateRequest",
    "Body",
    "CascadeIn",
    "FillIn",
    "FillsRequest",
    "OutcomeRequest",
    "PositionIn",
    "PositionsRequest",
    "ReturnsRequest",
    "SignalIn",
    "SizeRequest",
    "portfolio_field",
    "to_cascade",
    "to_signal",
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class SignalIn(_Body):
    """A Layer 2 `TacticalSignal` (see docs/service.md for every field's range)."""

    strategy_id: str = Field(examples=["momentum"])
    symbol: str = Field(examples=["BTC-USD"])
    action: str = Field(description="STRONG_BUY, BUY, HOLD, SELL or STRONG_SELL",
                        examples=["BUY"])
    confidence: float = Field(description="0..1", examples=[0.7])
    risk_score: float = Field(description="0..1", examples=[0.3])
    regime: str = Field(description="TRENDING_UP, TRENDING_DOWN, RANGING, "
                        "HIGH_VOLATILITY or CRISIS (Layer 2 aliases accepted)",
                        examples=["RANGING"])
    timestamp_ns: int | None = Field(None, description="defaults to the request's time")
    expected_return: float | None = Field(None, description="-1..1, in the signal's direction",
                                          examples=[0.02])
    predicted_volatility: float | None = Field(None, description="0 < v <= 5",
                                               examples=[0.05])
    signal_strength: float | None = None
    sentiment_score: float | None = None
    sentiment_confidence: float | None = None


class CascadeIn(_Body):
    """Layer 1 `CascadeIndicators` for one symbol."""

    funding_rate: float = Field(examples=[0.0001])
    oi_change_pct: float = Field(examples=[0.0])
    volume_ratio: float = Field(examples=[1.0])
    onchain_whale_pressure: float = Field(examples=[0.0])
    exchange_netflow_zscore: float = Field(examples=[0.0])
    liquidation_volume_24h: float | None = None


class SizeRequest(_Body):
    """``POST /v1/size``: one signal through Phase 1."""

    signal: SignalIn
    cascade: CascadeIn
    price: float = Field(description="current price, > 0", examples=[50000.0])
    current_position_usd: float | None = Field(None, description="held position (HOLD)")
    portfolio_value: float | None = Field(
        None, gt=0.0, le=1e13,
        description="overrides the configured one; bounded like it: 0 < x <= 1e13")


def _portfolio() -> Any:
    return Field("default", min_length=1, max_length=64,
                 description="the portfolio's book (created on first use, up to "
                             "book.max_portfolios)", examples=["default"])


def _stamp() -> Any:
    return Field(None, ge=0, le=2**63 - 1,
                 description="int64 nanoseconds since the epoch; defaults to the request's "
                             "time")


class AllocateRequest(_Body):
    """``POST /v1/allocate``: a batch through Phase 3 (Phase 2 baseline, optional RL) and the
    portfolio's book (standing targets, whole-book limits, order intents)."""

    signals: list[SignalIn]
    cascade: dict[str, CascadeIn] = Field(description="per symbol of the signals")
    prices: dict[str, float] = Field(description="current price per symbol, > 0")
    mode: Literal["incremental", "full"] = Field(
        "incremental", description="incremental: a symbol absent from the batch keeps its "
        "standing target; full: the batch is the whole portfolio (absent => target 0)")
    portfolio: str = _portfolio()


class FillIn(_Body):
    """One execution of an intent (docs/execution.md)."""

    symbol: str = Field(examples=["BTC-USD"])
    side: Literal["buy", "sell"]
    quantity: float = Field(description="base units, > 0", examples=[0.1])
    price: float = Field(description="> 0", examples=[50_000.0])
    fee: float = Field(0.0, description="USD paid (negative: a rebate)", examples=[2.5])
    client_order_id: str = Field(description="the intent's client_order_id")
    timestamp_ns: int | None = _stamp()
    fill_id: str | None = Field(None, description="the venue's trade id (re-sends are "
                                "recognised by it; without it, by all the fields)")


class FillsRequest(_Body):
    """``POST /v1/fills``: fills of the book's intents (all checked before any applies)."""

    fills: list[FillIn] = Field(min_length=1, max_length=10_000)


class PositionIn(_Body):
    """One position of a snapshot: the signed quantity held (negative: short)."""

    quantity: float = Field(description="signed base units", examples=[0.1])
    avg_price: float | None = Field(None, description="average entry, > 0")
    price: float | None = Field(None, description="current price (the mark), > 0")


class PositionsRequest(_Body):
    """``PUT /v1/positions``: an authoritative, complete snapshot of one portfolio (a
    symbol it does not list is flat)."""

    portfolio: str = _portfolio()
    positions: dict[str, PositionIn] = Field(max_length=10_000)
    cash: float | None = Field(None, description="the cash balance in USD (optional)")
    timestamp_ns: int | None = _stamp()


class OutcomeRequest(_Body):
    """``POST /v1/outcomes``: a realised return.

    With ``strategy_id``: that strategy's trade on ``symbol`` teaches its Kelly posterior and
    conformal window. Without: the symbol's result under the path that decided it
    (``used_rl``, default: the path of the last allocation for the symbol) goes into the
    RL-vs-baseline history and teaches the strategies that held the symbol.
    """

    symbol: str = Field(examples=["BTC-USD"])
    realized_return: float = Field(description="-1..10 (0.012 = +1.2 %)", examples=[0.012])
    strategy_id: str | None = None
    used_rl: bool | None = None
    predicted_return: float | None = None
    predicted_volatility: float | None = None


class ReturnsRequest(_Body):
    """``POST /v1/returns``: one time-aligned row of per-symbol returns (correlation).

    Symbols follow the signal symbol rules (non-empty, printable, at most 64 characters);
    a row holds at most ``portfolio.correlation.max_symbols_per_row`` symbols and may bring
    the window to at most ``portfolio.correlation.max_symbols`` distinct ones (checked by
    the correlation monitor: a 422 on ``returns``)."""

    returns: dict[str, float] = Field(
        description="symbol -> return (-1..10); symbols non-empty, printable, <= 64 chars",
        examples=[{"BTC-USD": 0.004, "ETH-USD": 0.006}])
    timestamp_ns: int | None = Field(
        None, ge=0, le=2**63 - 1,
        description="int64 nanoseconds since the epoch, at most "
                    "portfolio.correlation.max_clock_skew_sec ahead of the server's clock, "
                    "not before the previous row's; defaults to the request's time")


def to_signal(s: SignalIn, loc: tuple[str | int, ...], default_ts: int,
              raw: list[dict[str, Any]] | None = None) -> TacticalSignal:
    """Build the contract; a range error becomes a `FieldError` under ``loc``. The plain
    field dict (timestamp filled in) is appended to ``raw`` when given."""
    data: dict[str, Any] = s.model_dump()
    if data["timestamp_ns"] is None:
        data["timestamp_ns"] = default_ts
    try:
        sig = TacticalSignal(**data)
    except ValidationError as err:
        raise FieldError.from_validation(loc, err) from None
    if raw is not None:
        raw.append(data)
    return sig


def to_cascade(c: CascadeIn, loc: tuple[str | int, ...]) -> CascadeIndicators:
    try:
        return CascadeIndicators(**c.model_dump())
    except ValidationError as err:
        raise FieldError.from_validation(loc, err) from None


# For the other route modules (``trading.py``): the strict body base and the portfolio field.
Body = _Body
portfolio_field = _portfolio
