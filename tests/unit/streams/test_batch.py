"""A tick's signals and Layer 1 data as one allocation request; the output entry built from
the reply and the journaled source alone."""

from __future__ import annotations

from typing import Any

from himari_l3.config.schema import CascadeConfig, StreamsConfig
from himari_l3.streams.batch import TickBatch, allocation_request, build_output
from himari_l3.streams.layer2 import parse_layer2

NOW_MS = 1_700_000_000_000
CFG = StreamsConfig(symbol_map={"BTCUSDT": "BTC-USD", "ETHUSDT": "ETH-USD"},
                    l1_max_age_ms=5_000)


def _msg(symbol: str, **kw: Any) -> dict[str, Any]:
    return {"timestamp": NOW_MS, "symbol": symbol, "direction": 1, "confidence": 0.7,
            "current_regime": "RANGING", "time_in_force": "IOC", **kw}


def _reading(age_ms: int = 0) -> dict[str, str]:
    return {"funding_rate": "0", "oi_change_pct": "0", "volume_ratio": "1",
            "onchain_whale_pressure": "-0.4", "exchange_netflow_zscore": "0.5",
            "timestamp": str(NOW_MS - age_ms)}


def _batch() -> TickBatch:
    b = TickBatch()
    for i, sym in enumerate(("BTCUSDT", "ETHUSDT", "BTCUSDT")):
        b.add(f"{NOW_MS}-{i}", parse_layer2(_msg(sym), CFG, NOW_MS * 10**6), {})
    return b


def test_request_maps_layer1_data_onto_layer3_symbols_and_records_its_source() -> None:
    """Prices and readings keyed by Layer 1's symbols land on Layer 3's; the request carries
    the stream, the ids, the venue symbols and the hints; stale readings are noted."""
    inputs = allocation_request(_batch(), "l2", {"BTCUSDT": b"50000", "ETHUSDT": "nan"},
                                {"BTCUSDT": _reading(), "ETHUSDT": _reading(age_ms=9_000)},
                                NOW_MS * 10**6, CFG, cascade_config=CascadeConfig())
    assert inputs.prices == {"BTC-USD": 50_000.0}  # ETH's price invalid: left out
    assert inputs.cascade["BTC-USD"].whale_flow == -0.4
    assert inputs.cascade["BTC-USD"].exchange_netflow_zscore == 1.5
    assert inputs.notes["ETH-USD"]["code"] == "LAYER1_STALE"
    assert inputs.notes["ETH-USD"]["price"]["code"] == "LAYER1_INVALID_PRICE"
    src = inputs.request["source"]
    assert src["stream"] == "l2" and src["ids"] == [f"{NOW_MS}-{i}" for i in range(3)]
    assert src["venue_symbols"] == {"BTC-USD": "BTCUSDT", "ETH-USD": "ETHUSDT"}
    assert src["hints"]["BTC-USD"] == {"time_in_force": "IOC"}
    assert len(inputs.request["signals"]) == 3 and inputs.request["inputs"] == inputs.notes


def test_output_is_built_from_the_reply_and_the_source_only() -> None:
    """The same reply body and source give the same entry (live or re-published); the
    book's intents and trading state pass through, defaulting to [] and None."""
    source = {"stream": "l2", "ids": ["1-0"], "portfolio": "p1",
              "venue_symbols": {"BTC-USD": "BTCUSDT"}, "hints": {}}
    body = {"decision_id": 7, "allocations": {"BTC-USD": 100.0}, "timestamp_ns": 5,
            "path": "baseline", "config_version": "abc"}
    out = build_output(body, source)
    assert out == build_output(dict(body), dict(source))
    assert (out["schema_version"], out["decision_id"], out["source_ids"], out["portfolio"],
            out["intents"], out["trading_state"]) == (1, 7, ["1-0"], "p1", [], None)
    with_book = build_output({**body, "intents": [{"symbol": "BTC-USD"}],
                              "trading_state": {"state": "ACTIVE"}}, source)
    assert with_book["intents"] == [{"symbol": "BTC-USD"}]
    assert with_book["trading_state"] == {"state": "ACTIVE"}
