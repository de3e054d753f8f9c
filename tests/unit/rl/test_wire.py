"""The RL wire contract's codecs: batch bodies, per-item validation, and the batch
advertisement parsed defensively (a lying health answer never crashes, never points us
elsewhere)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from himari_l3._exceptions import InvalidRLPredictionException, ValidationError
from himari_l3.contracts import MarketRegime, RLPrediction, TacticalAction, TacticalSignal
from himari_l3.rl.wire import (
    BatchRoute,
    encode_batch_request,
    encode_request,
    healthz_url,
    parse_batch,
    parse_capabilities,
)
from himari_l3.rl_port import RLFailure

URL = "http://rl.test:8888/predict"


def signal(symbol: str) -> TacticalSignal:
    return TacticalSignal("momentum", symbol, TacticalAction.BUY, 0.8, 0.3,
                          MarketRegime.TRENDING_UP, timestamp_ns=1)


SIGNALS = [signal("A"), signal("B"), signal("C")]


def item(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {"position_pct": 0.1, "confidence": 0.9, "predicted_return": 0.01,
                               "predicted_volatility": 0.03, "model_version": "m1"}
    body.update(overrides)
    return body


def batch(items: list[Any]) -> bytes:
    return json.dumps({"predictions": items}).encode()


def outcome(results: list[RLPrediction | RLFailure]) -> list[str]:
    return [r.reason if isinstance(r, RLFailure) else "ok" for r in results]


def test_batch_request_carries_market_data_once_and_signals_in_order() -> None:
    """The batch body is market_data plus each signal's per-signal fields, in order."""
    body = json.loads(encode_batch_request(SIGNALS, {"mid": 1.0}))
    assert body["market_data"] == {"mid": 1.0}
    singles = [json.loads(encode_request(s, None)) for s in SIGNALS]
    assert body["signals"] == [{k: v for k, v in s.items() if k != "market_data"}
                               for s in singles]


def test_batch_request_refuses_market_data_that_is_not_json() -> None:
    """A NaN in market_data is the caller's error, named, before anything is sent."""
    with pytest.raises(ValidationError, match="market_data"):
        encode_batch_request(SIGNALS, {"mid": float("nan")})


def test_a_valid_batch_answer_is_one_prediction_per_signal() -> None:
    """Each item becomes a prediction with the batch's latency; echoed ids are accepted."""
    items = [item(position_pct=0.1 * i, strategy_id="momentum", symbol=s.symbol)
             for i, s in enumerate(SIGNALS)]
    results = parse_batch(batch(items), SIGNALS, 21.5, 7)
    assert outcome(results) == ["ok"] * 3
    preds = [r for r in results if isinstance(r, RLPrediction)]
    assert [p.optimal_position_pct for p in preds] == pytest.approx([0.0, 0.1, 0.2])
    assert {(p.latency_ms, p.timestamp_ns) for p in preds} == {(21.5, 7)}


@pytest.mark.parametrize("body", [
    batch([item(), item()]),                      # one short
    batch([item()] * 4),                          # one too many
    batch([]),
    json.dumps([item()] * 3).encode(),            # no envelope
    json.dumps({"predictions": {"0": item()}}).encode(),
    json.dumps({"answers": [item()] * 3}).encode(),
    b"{not json",
    b"[" * 100_000,                               # deep nesting: no RecursionError escapes
])
def test_a_batch_answer_that_cannot_be_matched_to_its_signals_fails_whole(body: bytes) -> None:
    """A wrong count or a body that is not {"predictions": [...]} trusts no item."""
    with pytest.raises(InvalidRLPredictionException):
        parse_batch(body, SIGNALS, 1.0, 1)


@pytest.mark.parametrize(("bad", "reason"), [
    (item(position_pct=3.0), "invalid_response"),
    (item(confidence="0.9"), "invalid_response"),
    (item(predicted_volatility=float("nan")), "invalid_response"),
    ({k: v for k, v in item().items() if k != "model_version"}, "invalid_response"),
    ([0.1, 0.9], "invalid_response"),
    (None, "invalid_response"),
    (item(symbol="C"), "invalid_response"),       # echoes another signal: out of order
    ({"error": "unknown symbol"}, "http_error"),  # the model declined this one signal
])
def test_a_bad_item_fails_its_own_signal_only(bad: object, reason: str) -> None:
    """Items are judged one by one: the bad one fails with its reason, the others stand."""
    results = parse_batch(batch([item(), bad, item()]), SIGNALS, 1.0, 1)
    assert outcome(results) == ["ok", reason, "ok"]
    failure = results[1]
    assert isinstance(failure, RLFailure)
    assert (failure.symbol, failure.strategy_id) == ("B", "momentum")
    assert "predictions[1]" in failure.detail or "item 1" in failure.detail


def test_healthz_sits_next_to_the_predict_route() -> None:
    """The health route replaces the predict URL's last path segment."""
    assert healthz_url("http://h:8888/predict") == "http://h:8888/healthz"
    assert healthz_url("https://h/models/x/predict") == "https://h/models/x/healthz"
    assert healthz_url("http://h:1/") == "http://h:1/healthz"


def advert(**batch_fields: object) -> bytes:
    return json.dumps({"status": "ok", "capabilities": {"predict_batch": batch_fields}}).encode()


def test_an_advertised_batch_route_is_resolved_on_the_models_own_origin() -> None:
    """An absolute or relative path resolves against the predict URL."""
    assert parse_capabilities(advert(path="/predict/batch", max_signals=256), URL) == \
        BatchRoute("http://rl.test:8888/predict/batch", 256)
    assert parse_capabilities(advert(path="batch", max_signals=1),
                              "http://rl.test:8888/m/predict") == \
        BatchRoute("http://rl.test:8888/m/batch", 1)


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[1, 2]", b"[" * 100_000, b'"ok"',
    json.dumps({"status": "ok"}).encode(),
    json.dumps({"capabilities": ["predict_batch"]}).encode(),
    json.dumps({"capabilities": {"predict_batch": True}}).encode(),
    advert(max_signals=10),
    advert(path=None, max_signals=10),
    advert(path=7, max_signals=10),
    advert(path="", max_signals=10),
    advert(path="/predict batch", max_signals=10),
    advert(path="/predict\nbatch", max_signals=10),
    advert(path="/" + "x" * 600, max_signals=10),
    advert(path="http://elsewhere.test:8888/predict/batch", max_signals=10),
    advert(path="//elsewhere.test/predict/batch", max_signals=10),
    advert(path="https://rl.test:8888/predict/batch", max_signals=10),
    advert(path="/predict/batch#frag", max_signals=10),
    advert(path="/predict/batch"),
    advert(path="/predict/batch", max_signals=0),
    advert(path="/predict/batch", max_signals=-5),
    advert(path="/predict/batch", max_signals=10**9),
    advert(path="/predict/batch", max_signals=True),
    advert(path="/predict/batch", max_signals="10"),
    advert(path="/predict/batch", max_signals=2.5),
])
def test_a_lying_advertisement_means_per_signal_requests(body: bytes) -> None:
    """Anything but a same-origin path and a max_signals in 1..4096 is no advertisement:
    None, never an exception."""
    assert parse_capabilities(body, URL) is None


def test_a_batch_route_bounds_its_size() -> None:
    """BatchRoute refuses a max_signals outside 1..4096 (a batch is split below it)."""
    with pytest.raises(ValueError, match="max_signals"):
        BatchRoute(URL, 0)
    with pytest.raises(ValueError, match="max_signals"):
        BatchRoute(URL, 4097)
