"""One typed batch input, parsed at the edge: the signals plus a market snapshot per symbol.

The engines (Phase 2/3, the book, the stream consumer) take a `SignalBatch`; everything that
turns loose input into one — dicts into `TacticalSignal`s, a bare readings object shared by
every symbol, a missing or non-finite price, duplicate signals, a signal without a timestamp
— happens here, once, in `parse_batch`. A signal that cannot be used is not an exception: it
is a `RejectedSignal` with its reason code, and the rest of the batch goes on.

Unstamped signals (``timestamp_ns`` None) are stamped with the caller's clock reading
``now_ns`` here; nothing in the domain reads the wall clock. A signal stamped further ahead
of ``now_ns`` than ``max_ahead_ns`` is rejected (``FUTURE_TIMESTAMP``): duplicates are
resolved newest first, so a far-future stamp would win over every real signal of its key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

from ._exceptions import ValidationError
from ._validate import MAX_PRICE, MIN_PRICE
from .contracts import CascadeIndicators, TacticalSignal
from .events import InputKind, InputRejected
from .observers import NULL_OBSERVER, Observer
from .trace import ReasonCode

__all__ = ["MarketSnapshot", "RejectedSignal", "SignalBatch", "parse_batch"]

_new = tuple.__new__  # the snapshot record without the constructor call (per symbol, per batch)


class MarketSnapshot(NamedTuple):
    """What Layer 3 knows about one symbol's market when it decides.

    ``price`` > 0 and finite (validated by `parse_batch`); ``cascade`` the Layer 1 stress
    readings; ``volume`` and ``spread_bps`` optional; ``timestamp_ns`` when the price was
    observed (None: unknown, treated as "now").
    """

    symbol: str
    price: float
    cascade: CascadeIndicators
    volume: float | None = None
    spread_bps: float | None = None
    timestamp_ns: int | None = None


class RejectedSignal(NamedTuple):
    """A signal left out of a batch: where it was, what it was for, and why."""

    position: int  # the signal's index in the request
    strategy_id: str | None
    symbol: str | None
    code: ReasonCode
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (``index``: the position); a superseded duplicate's position is
        irrelevant and left out."""
        out: dict[str, Any] = {"index": self.position, "strategy_id": self.strategy_id,
                               "symbol": self.symbol, "code": self.code.value,
                               "reason": self.reason}
        if self.code is ReasonCode.DUPLICATE_SUPERSEDED:
            del out["index"]
        return out


class SignalBatch(NamedTuple):
    """Valid signals (one per strategy x symbol, in canonical order), the market snapshot of
    each of their symbols, and the signals rejected on the way in."""

    signals: tuple[TacticalSignal, ...]
    market: Mapping[str, MarketSnapshot]
    rejected: tuple[RejectedSignal, ...]


def parse_batch(
    signals: Sequence[Any],
    cascade_indicators: Mapping[str, CascadeIndicators] | CascadeIndicators,
    current_prices: Mapping[str, float],
    now_ns: int,
    observer: Observer = NULL_OBSERVER,
    max_ahead_ns: int | None = None,
) -> SignalBatch:
    """Build a `SignalBatch` from the loose inputs of the public API (signals may be dicts;
    one readings object may stand for every symbol). Never raises for a bad signal, price or
    reading: the signal is rejected with its reason (and counted through ``observer``).
    ``max_ahead_ns``: how far a signal's timestamp may lead ``now_ns`` (None: no bound)."""
    rejected: list[RejectedSignal] = []
    candidates: list[tuple[int, TacticalSignal]] = []
    market: dict[str, MarketSnapshot] = {}
    # (dict first: an ABC isinstance check costs ten times a plain one.)
    prices = current_prices if isinstance(current_prices, (dict, Mapping)) else {}
    for i, raw in enumerate(signals if isinstance(signals, (list, tuple)) else []):
        try:
            sig = raw if isinstance(raw, TacticalSignal) else TacticalSignal.from_dict(raw)
        except ValidationError as err:
            rejected.append(_reject(i, raw, ReasonCode.INVALID_SIGNAL, str(err)))
            observer.emit(InputRejected(InputKind.SIGNAL, err.field))
            continue
        if sig.timestamp_ns is None:
            sig = replace(sig, timestamp_ns=now_ns)
        elif max_ahead_ns is not None and sig.timestamp_ns > now_ns + max_ahead_ns:
            rejected.append(_reject(i, sig, ReasonCode.FUTURE_TIMESTAMP,
                                    f"timestamp_ns was {sig.timestamp_ns}, expected at most "
                                    f"{now_ns + max_ahead_ns} (the clock's {now_ns} plus the "
                                    "allowed skew)"))
            observer.emit(InputRejected(InputKind.SIGNAL, "timestamp_ns"))
            continue
        if sig.symbol not in market:
            problem = _snapshot(sig.symbol, prices, cascade_indicators, market, observer)
            if problem is not None:
                rejected.append(_reject(i, sig, *problem))
                continue
        candidates.append((i, sig))
    valid = _one_per_key(candidates, rejected)
    if rejected:
        rejected.sort(key=lambda r: (r.position, r.code))
    # Every symbol with a snapshot has a valid signal: a superseded duplicate leaves its
    # key's winner behind.
    return _new(SignalBatch, (tuple(valid), market, tuple(rejected)))


def _snapshot(symbol: str, prices: Mapping[str, float],
              cascade: Mapping[str, CascadeIndicators] | CascadeIndicators,
              market: dict[str, MarketSnapshot],
              observer: Observer) -> tuple[ReasonCode, str] | None:
    """Add ``symbol``'s snapshot to ``market``; or say why its signals cannot be sized."""
    price = prices.get(symbol)
    if price is None:
        return ReasonCode.MISSING_PRICE, f"current_prices[{symbol}] is missing"
    if (isinstance(price, bool) or not isinstance(price, (int, float))
            or not MIN_PRICE <= price <= MAX_PRICE):  # (False for NaN)
        observer.emit(InputRejected(InputKind.PRICE, f"current_prices[{symbol}]"))
        return (ReasonCode.INVALID_PRICE,
                f"current_prices[{symbol}] was {price!r}, expected "
                f"{MIN_PRICE:g} <= price <= {MAX_PRICE:g}")
    readings = _cascade_for(cascade, symbol)
    if readings is None:
        return (ReasonCode.MISSING_CASCADE,
                f"cascade_indicators[{symbol}] is missing or not a CascadeIndicators")
    market[symbol] = _new(MarketSnapshot, (symbol, price, readings, None, None, None))
    return None


def _one_per_key(candidates: list[tuple[int, TacticalSignal]],
                 rejected: list[RejectedSignal]) -> list[TacticalSignal]:
    """One signal per strategy x symbol: the newest wins (ties broken by content), so the
    outcome is the same in any order. Returns the winners in canonical (key) order."""
    best: dict[tuple[str, str], tuple[int, TacticalSignal]] = {}
    superseded = "a newer signal for the same strategy and symbol"
    for i, sig in candidates:
        key = (sig.strategy_id, sig.symbol)
        cur = best.get(key)
        if cur is None or _newer(sig, cur[1]):
            if cur is not None:
                rejected.append(_reject(cur[0], cur[1], ReasonCode.DUPLICATE_SUPERSEDED,
                                        superseded))
            best[key] = (i, sig)
        else:
            rejected.append(_reject(i, sig, ReasonCode.DUPLICATE_SUPERSEDED, superseded))
    return [best[k][1] for k in sorted(best)]


def _cascade_for(cascade: Any, symbol: str) -> CascadeIndicators | None:
    if isinstance(cascade, CascadeIndicators):
        return cascade
    if isinstance(cascade, (dict, Mapping)):
        c = cascade.get(symbol)
        return c if isinstance(c, CascadeIndicators) else None
    return None


def _newer(a: TacticalSignal, b: TacticalSignal) -> bool:
    """Total order on signals of one key: newest, then most confident, then by content."""
    # Both stamped by parse_batch.
    ka, kb = (a.timestamp_ns or 0, a.confidence), (b.timestamp_ns or 0, b.confidence)
    if ka != kb:
        return ka > kb
    return repr(a.to_dict()) > repr(b.to_dict())


def _reject(index: int, raw: Any, code: ReasonCode, reason: str) -> RejectedSignal:
    strategy = getattr(raw, "strategy_id", None)
    symbol = getattr(raw, "symbol", None)
    if isinstance(raw, dict):
        strategy, symbol = raw.get("strategy_id"), raw.get("symbol")
    return RejectedSignal(index, strategy, symbol, code, reason)
