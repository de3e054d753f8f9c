"""Request bodies of the HTTP API: shapes, JSON types and the numeric ranges.

Pydantic checks that each field is there, has the right JSON type (strict: no strings for
numbers, no NaN/Infinity) and is in range — the same ranges the contracts enforce, written
here so that the OpenAPI document states them; `to_signal` / `to_cascade` then build the
immutable contracts, whose checks cover what JSON Schema cannot say (printable symbols,
enum aliases, the timestamp's skew). Either kind of failure is a 422 whose ``loc`` is the
field's path in the body.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from .._exceptions import ValidationError
from .._validate import (
    INT64_MAX,
    MAX_PORTFOLIO_VALUE,
    MAX_POSITION_USD,
    MAX_PRICE,
    MIN_PRICE,
)
from ..book.fills import MAX_QUANTITY as MAX_BOOK_QUANTITY
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


# Reusable field types: the ranges the contracts enforce, written where JSON Schema (and so
# the OpenAPI document) can say them. Rules JSON Schema cannot say are in the descriptions.
_ID_RULE = ("1..64 characters, printable (no control, format or line-separator characters), "
            "not only whitespace")
Identifier = Annotated[str, Field(min_length=1, max_length=64, description=_ID_RULE)]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]
Price = Annotated[float, Field(ge=MIN_PRICE, le=MAX_PRICE,
                               description=f"quote units per unit of the asset, "
                                           f"{MIN_PRICE:g} <= price <= {MAX_PRICE:g}")]
Return = Annotated[float, Field(ge=-1.0, le=10.0, description="-1..10 (0.012 = +1.2 %)")]
Timestamp = Annotated[int, Field(ge=0, le=INT64_MAX)]
# dict keys are symbols: the rule is in the schema (propertyNames); the engines enforce it
# with the message that names the key (a 422 on the mapping).
_SYMBOL_KEYS: JsonDict = {"propertyNames": {"minLength": 1, "maxLength": 64}}


class SignalIn(_Body):
    """A Layer 2 `TacticalSignal` (see docs/service.md for every field's range)."""

    strategy_id: Identifier = Field(examples=["momentum"])
    symbol: Identifier = Field(examples=["BTC-USD"])
    action: str = Field(description="STRONG_BUY, BUY, HOLD, SELL or STRONG_SELL "
                        "(case-insensitive; '-' or ' ' for '_')", examples=["BUY"])
    confidence: Unit = Field(description="0..1", examples=[0.7])
    risk_score: Unit = Field(description="0..1", examples=[0.3])
    regime: str = Field(description="TRENDING_UP, TRENDING_DOWN, RANGING, "
                        "HIGH_VOLATILITY or CRISIS (Layer 2 aliases accepted)",
                        examples=["RANGING"])
    timestamp_ns: Timestamp | None = Field(
        None, description="int64 nanoseconds since the epoch, at most "
        "portfolio.max_signal_clock_skew_sec ahead of the server's clock; defaults to the "
        "request's time")
    expected_return: float | None = Field(None, ge=-1.0, le=1.0,
                                          description="-1..1, in the signal's direction",
                                          examples=[0.02])
    predicted_volatility: float | None = Field(None, gt=0.0, le=5.0,
                                               description="0 < v <= 5", examples=[0.05])
    signal_strength: Unit | None = None
    sentiment_score: Unit | None = Field(None, description="0 bearish .. 1 bullish")
    sentiment_confidence: Unit | None = None


class CascadeIn(_Body):
    """Layer 1 `CascadeIndicators` for one symbol."""

    funding_rate: float = Field(ge=-1.0, le=1.0, examples=[0.0001])
    oi_change_pct: float = Field(ge=-1.0, le=10.0, examples=[0.0])
    volume_ratio: float = Field(ge=0.0, le=1000.0, examples=[1.0])
    onchain_whale_pressure: float = Field(ge=0.0, le=1.0, examples=[0.0])
    exchange_netflow_zscore: float = Field(ge=-50.0, le=50.0, examples=[0.0])
    liquidation_volume_24h: float | None = Field(None, ge=0.0, le=1e13)


class SizeRequest(_Body):
    """``POST /v1/size``: one signal through Phase 1."""

    signal: SignalIn
    cascade: CascadeIn
    price: Price = Field(examples=[50000.0])
    current_position_usd: float | None = Field(
        None, ge=-MAX_POSITION_USD, le=MAX_POSITION_USD,
        description=f"held position in USD, signed (what a HOLD keeps at most); "
                    f"|x| <= {MAX_POSITION_USD:g}")
    portfolio_value: float | None = Field(
        None, gt=0.0, le=MAX_PORTFOLIO_VALUE,
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
    portfolio's book (standing targets, whole-book limits, order intents).

    Every signal's symbol needs an entry in ``prices`` and in ``cascade`` (a 422 naming the
    missing one); at most ``service.max_signals_per_request`` signals."""

    signals: list[SignalIn]
    cascade: dict[str, CascadeIn] = Field(description="per symbol of the signals",
                                          json_schema_extra=_SYMBOL_KEYS)
    prices: dict[str, Price] = Field(description="current price per symbol of the signals",
                                     json_schema_extra=_SYMBOL_KEYS)
    mode: Literal["incremental", "full"] = Field(
        "incremental", description="incremental: a symbol absent from the batch keeps its "
        "standing target; full: the batch is the whole portfolio (absent => target 0)")
    portfolio: str = _portfolio()


class FillIn(_Body):
    """One execution of an intent (docs/execution.md). ``|fee| <= quantity x price``."""

    symbol: Identifier = Field(examples=["BTC-USD"])
    side: Literal["buy", "sell"]
    quantity: float = Field(gt=0.0, le=MAX_BOOK_QUANTITY, description="base units, > 0",
                            examples=[0.1])
    price: float = Field(gt=0.0, le=MAX_PRICE, description="> 0", examples=[50_000.0])
    fee: float = Field(0.0, description="USD paid (negative: a rebate); |fee| <= quantity x "
                       "price", examples=[2.5])
    client_order_id: Identifier = Field(description="the intent's client_order_id")
    timestamp_ns: int | None = _stamp()
    fill_id: str | None = Field(None, min_length=1, max_length=128,
                                description="the venue's trade id (re-sends are recognised "
                                "by it; without it, by all the fields)")


class FillsRequest(_Body):
    """``POST /v1/fills``: fills of the book's intents (all checked before any applies)."""

    fills: list[FillIn] = Field(min_length=1, max_length=10_000)


class PositionIn(_Body):
    """One position of a snapshot: the signed quantity held (negative: short)."""

    quantity: float = Field(ge=-MAX_BOOK_QUANTITY, le=MAX_BOOK_QUANTITY,
                            description="signed base units", examples=[0.1])
    avg_price: float | None = Field(None, gt=0.0, le=MAX_PRICE,
                                    description="average entry, > 0")
    price: float | None = Field(None, gt=0.0, le=MAX_PRICE,
                                description="current price (the mark), > 0")


class PositionsRequest(_Body):
    """``PUT /v1/positions``: an authoritative, complete snapshot of one portfolio (a
    symbol it does not list is flat)."""

    portfolio: str = _portfolio()
    positions: dict[str, PositionIn] = Field(max_length=10_000,
                                             json_schema_extra=_SYMBOL_KEYS)
    cash: float | None = Field(None, ge=-1e15, le=1e15,
                               description="the cash balance in USD (optional)")
    timestamp_ns: int | None = _stamp()


class OutcomeRequest(_Body):
    """``POST /v1/outcomes``: a realised return.

    With ``strategy_id``: that strategy's trade on ``symbol`` teaches its Kelly posterior and
    conformal window. Without: the symbol's result under the path that decided it
    (``used_rl``, default: the path of the last allocation for the symbol) goes into the
    RL-vs-baseline history and teaches the strategies that held the symbol.
    ``predicted_return`` and ``predicted_volatility`` need ``strategy_id`` (a 422 naming
    them otherwise).
    """

    symbol: Identifier = Field(examples=["BTC-USD"])
    realized_return: Return = Field(examples=[0.012])
    strategy_id: Identifier | None = None
    used_rl: bool | None = None
    predicted_return: float | None = Field(None, ge=-1.0, le=1.0)
    predicted_volatility: float | None = Field(None, gt=0.0, le=5.0)


class ReturnsRequest(_Body):
    """``POST /v1/returns``: one time-aligned row of per-symbol returns (correlation).

    Symbols follow the signal symbol rules (non-empty, printable, at most 64 characters);
    a row holds at least one symbol and at most
    ``portfolio.correlation.max_symbols_per_row``, and may bring the window to at most
    ``portfolio.correlation.max_symbols`` distinct ones (checked by the correlation
    monitor: a 422 on ``returns``)."""

    returns: dict[str, Return] = Field(
        min_length=1,
        description="symbol -> return (-1..10); symbols non-empty, printable, <= 64 chars; "
                    "at least one",
        examples=[{"BTC-USD": 0.004, "ETH-USD": 0.006}], json_schema_extra=_SYMBOL_KEYS)
    timestamp_ns: Timestamp | None = Field(
        None, description="int64 nanoseconds since the epoch, at most "
                          "portfolio.correlation.max_clock_skew_sec ahead of the server's "
                          "clock, not before the previous row's; defaults to the request's "
                          "time")


def to_signal(s: SignalIn, loc: tuple[str | int, ...], default_ts: int,
              raw: list[dict[str, Any]] | None = None,
              max_ahead_ns: int | None = None) -> TacticalSignal:
    """Build the contract; a range error becomes a `FieldError` under ``loc``, and so does a
    timestamp more than ``max_ahead_ns`` ahead of ``default_ts`` (the request's time). The
    plain field dict (timestamp filled in) is appended to ``raw`` when given."""
    data: dict[str, Any] = s.model_dump()
    if data["timestamp_ns"] is None:
        data["timestamp_ns"] = default_ts
    elif max_ahead_ns is not None and data["timestamp_ns"] > default_ts + max_ahead_ns:
        ts, limit = data["timestamp_ns"], default_ts + max_ahead_ns
        raise FieldError((*loc, "timestamp_ns"), f"timestamp_ns was {ts}, expected at most "
                         f"{limit}: the server's clock {default_ts} plus "
                         f"portfolio.max_signal_clock_skew_sec", ts)
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
