"""One tick's messages as one allocation request, and the decision as the output entry (pure).

`TickBatch` collects what a tick read: the parsed signals with their stream ids, and the ids
of the messages that were dead-lettered. `allocation_request` turns the signals and Layer 1's
market data into the arguments of ``SizingService.allocate`` and the JSON journaled with
the decision — which carries the input stream and ids (``source``: what makes redelivery
idempotent, and what the output entry is rebuilt from) and the Layer 1 notes (``inputs``).

`build_output` is the one place that shapes the entry Layer 4 reads (docs/integration.md):
from the service's reply body and the journaled ``source``, so a decision re-published after
a crash is the same entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config.schema import CascadeConfig, StreamsConfig
from ..contracts import CascadeIndicators, TacticalSignal
from ..trace import ReasonCode
from .layer1 import Layer1Note, parse_price, resolve_readings
from .layer2 import Layer2Signal

__all__ = ["OUTPUT_SCHEMA_VERSION", "AllocationInputs", "TickBatch", "allocation_request",
           "build_output", "source_of"]

OUTPUT_SCHEMA_VERSION = 1


@dataclass(slots=True)
class TickBatch:
    """What one tick read: (stream id, signal) pairs in arrival order, and each message's
    raw fields (kept to dead-letter them if the engine refuses the batch)."""

    signals: list[tuple[str, Layer2Signal]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def add(self, msg_id: str, signal: Layer2Signal, fields: Any) -> None:
        self.signals.append((msg_id, signal))
        self.raw[msg_id] = fields

    @property
    def ids(self) -> list[str]:
        return [i for i, _ in self.signals]

    def venue_symbols(self) -> list[str]:
        """Layer 2/1 symbols of the batch, sorted, once each."""
        return sorted({s.venue_symbol for _, s in self.signals})


@dataclass(frozen=True, slots=True)
class AllocationInputs:
    """The arguments of ``SizingService.allocate`` and the request journaled with them."""

    signals: list[TacticalSignal]
    cascade: dict[str, CascadeIndicators]
    prices: dict[str, float]
    notes: dict[str, dict[str, Any]]
    request: dict[str, Any]


def allocation_request(batch: TickBatch, stream: str, raw_prices: Mapping[str, Any],
                       raw_readings: Mapping[str, Mapping[str, Any] | None], now_ns: int,
                       config: StreamsConfig, *,
                       cascade_config: CascadeConfig) -> AllocationInputs:
    """Map Layer 1's data (keyed by Layer 1's symbols) onto Layer 3's symbols and build the
    request. A missing or invalid price leaves its signals to be rejected by the engine
    (``MISSING_PRICE``); readings follow `resolve_readings`."""
    venues = batch.venue_symbols()
    to_internal = {s.venue_symbol: s.signal.symbol for _, s in batch.signals}
    readings, l1_notes = resolve_readings(venues, raw_readings, now_ns, config, cascade_config)
    cascade = {to_internal[v]: readings[v] for v in venues}
    prices: dict[str, float] = {}
    notes: dict[str, dict[str, Any]] = {to_internal[v]: n.to_dict()
                                        for v, n in l1_notes.items()}
    for v in venues:
        price = parse_price(raw_prices.get(v))
        if price is not None:
            prices[to_internal[v]] = price
        elif raw_prices.get(v) is not None:
            notes.setdefault(to_internal[v], {})["price"] = Layer1Note(
                ReasonCode.LAYER1_INVALID_PRICE, "signal_rejected", None,
                f"{raw_prices.get(v)!r} is not a price > 0").to_dict()
    signals = [s.signal for _, s in batch.signals]
    request = {
        "signals": [s.to_dict() for s in signals],
        "cascade": {k: c.to_dict() for k, c in sorted(cascade.items())},
        "prices": prices,
        "source": _source(batch, stream, config.portfolio, to_internal),
        "inputs": notes,
    }
    return AllocationInputs(signals, cascade, prices, notes, request)


def _source(batch: TickBatch, stream: str, portfolio: str,
            to_internal: Mapping[str, str]) -> dict[str, Any]:
    hints: dict[str, dict[str, Any]] = {}
    for _, s in batch.signals:  # the latest message's hints per symbol win
        if s.hints:
            hints[s.signal.symbol] = dict(s.hints)
    notes = {i: list(s.notes) for i, s in batch.signals if s.notes}
    return {"stream": stream, "ids": batch.ids, "portfolio": portfolio,
            "venue_symbols": {internal: venue for venue, internal in sorted(
                to_internal.items())},
            "hints": hints, "signal_notes": notes}


def build_output(body: Mapping[str, Any], source: Mapping[str, Any]) -> dict[str, Any]:
    """The output entry for a decision: its reply body (as journaled) and its ``source``.

    ``intents`` and ``trading_state`` come from the reply when the engine provides them (the
    book and the trading states); until then ``[]`` and ``None``.
    """
    return {
        "schema_version": OUTPUT_SCHEMA_VERSION,
        "decision_id": body["decision_id"],
        "portfolio": source.get("portfolio"),
        "timestamp_ns": body.get("timestamp_ns"),
        "config_version": body.get("config_version"),
        "path": body.get("path"),
        "source_stream": source.get("stream"),
        "source_ids": list(source.get("ids", ())),
        "allocations": body.get("allocations", {}),
        "venue_symbols": source.get("venue_symbols", {}),
        "total_allocated_usd": body.get("total_allocated_usd"),
        "portfolio_value": body.get("portfolio_value"),
        "binding_limits": body.get("binding_limits", {}),
        "provenance": body.get("provenance", {}),
        "rejected_signals": body.get("rejected_signals", []),
        "intents": body.get("intents", []),
        "trading_state": body.get("trading_state"),
        "execution_hints": source.get("hints", {}),
    }


def source_of(request: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``source`` of a journaled stream request (empty for other requests)."""
    src = request.get("source")
    return src if isinstance(src, Mapping) else {}
