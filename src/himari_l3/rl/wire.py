"""The RL model wire contract's codecs: request bodies, answers, and the batch advertisement.

Pure functions over bytes and JSON values (no sockets), shared by the HTTP transport
(``http.py``) and checked against the reference server (``server.py``).

Per-signal: ``POST <predict URL>`` with the signal's fields plus ``market_data``; the answer is
one prediction object (`parse_prediction`).

Batch: ``POST <batch URL>`` with ``{"market_data": ..., "signals": [<signal fields>, ...]}``;
the answer is ``{"predictions": [<item>, ...]}`` with exactly one item per signal, in order.
An item is a prediction object (the same fields and ranges as a per-signal answer; it may
echo ``strategy_id``/``symbol``, which must then match its signal) or ``{"error": "<text>"}``
(the model declined that one signal, as a non-2xx status declines one per-signal request).

A server offers the batch route by advertising it in ``GET <healthz URL>``:
``{"capabilities": {"predict_batch": {"path": "/predict/batch", "max_signals": 256}}}``
(`parse_capabilities`; anything else, or nothing, means per-signal requests only).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urljoin, urlsplit

from .._exceptions import InvalidRLPredictionException, ValidationError
from ..contracts import RLPrediction, TacticalSignal
from ..rl_port import RLFailure, RLResult

__all__ = [
    "BATCH_CAPABILITY",
    "MAX_ADVERTISED_SIGNALS",
    "BatchRoute",
    "encode_batch_request",
    "encode_request",
    "healthz_url",
    "parse_batch",
    "parse_capabilities",
    "parse_prediction",
    "prediction_from_json",
]

BATCH_CAPABILITY: Final = "predict_batch"
# The most signals one batch request may carry, whatever a server claims: a larger batch is
# split into several requests (sent in parallel), so a lying server cannot make us build an
# unbounded request body.
MAX_ADVERTISED_SIGNALS: Final = 4096
_MAX_PATH_CHARS: Final = 512
_FIELDS: Final = ("position_pct", "confidence", "predicted_return", "predicted_volatility",
                  "model_version")


def _dumps(body: dict[str, Any], market_data: dict[str, Any] | None) -> bytes:
    try:
        return json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as err:
        raise ValidationError("market_data", market_data,
                              f"a JSON object of finite values ({err})") from None


def encode_request(signal: TacticalSignal, market_data: dict[str, Any] | None) -> bytes:
    """The per-signal request body: the signal's fields plus ``market_data`` (caller input
    errors raise `ValidationError` here, before the breaker or the network is involved)."""
    body = signal.to_dict()
    body["market_data"] = market_data
    return _dumps(body, market_data)


def encode_batch_request(signals: Sequence[TacticalSignal],
                         market_data: dict[str, Any] | None) -> bytes:
    """The batch request body: ``market_data`` once, then each signal's fields in order."""
    return _dumps({"market_data": market_data, "signals": [s.to_dict() for s in signals]},
                  market_data)


def prediction_from_json(data: object, latency_ms: float, timestamp_ns: int) -> RLPrediction:
    """Validate one decoded answer into an `RLPrediction` or raise
    `InvalidRLPredictionException` (strings and booleans posing as numbers, NaN/inf and
    out-of-range values are all refused by `RLPrediction`)."""
    if not isinstance(data, dict):
        raise InvalidRLPredictionException("body", data, "a JSON object")
    missing = [k for k in _FIELDS if k not in data]
    if missing:
        raise InvalidRLPredictionException(missing[0], None, "a value (field missing)")
    return RLPrediction(
        optimal_position_pct=data["position_pct"],
        confidence=data["confidence"],
        predicted_return=data["predicted_return"],
        predicted_volatility=data["predicted_volatility"],
        model_version=data["model_version"],
        latency_ms=min(max(latency_ms, 0.0), 1e7),
        timestamp_ns=timestamp_ns,
    )


def _loads(body: bytes) -> object:
    # json.loads accepts NaN/Infinity literals; RLPrediction's finite-range checks refuse them.
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidRLPredictionException("body", body[:60], "a JSON object") from None


def parse_prediction(body: bytes, latency_ms: float, timestamp_ns: int) -> RLPrediction:
    """Validate a per-signal response body into an `RLPrediction` or raise
    `InvalidRLPredictionException`."""
    return prediction_from_json(_loads(body), latency_ms, timestamp_ns)


def _item(signal: TacticalSignal, index: int, item: object, latency_ms: float,
          timestamp_ns: int) -> RLResult:
    """One batch item: a prediction for ``signal`` or the failure it stands for."""
    if isinstance(item, dict) and set(item) == {"error"}:
        return RLFailure(signal.symbol, signal.strategy_id, "http_error",
                         f"the model declined item {index}: {str(item['error'])[:200]}")
    try:
        if isinstance(item, dict):
            for key in ("strategy_id", "symbol"):
                if key in item and item[key] != getattr(signal, key):
                    raise InvalidRLPredictionException(
                        f"predictions[{index}].{key}", item[key],
                        f"{getattr(signal, key)!r} (answers must come in request order)")
        return prediction_from_json(item, latency_ms, timestamp_ns)
    except InvalidRLPredictionException as exc:
        return RLFailure(signal.symbol, signal.strategy_id, "invalid_response",
                         f"predictions[{index}]: {exc}")


def parse_batch(body: bytes, signals: Sequence[TacticalSignal], latency_ms: float,
                timestamp_ns: int) -> list[RLResult]:
    """Validate a batch response body: one result per signal, in order.

    A body that is not ``{"predictions": [...]}`` with exactly ``len(signals)`` items raises
    `InvalidRLPredictionException` (no item can be trusted to belong to its signal); a bad
    item is an ``invalid_response`` failure for its own signal only.
    """
    data = _loads(body)
    items = data.get("predictions") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise InvalidRLPredictionException("predictions", type(items).__name__,
                                           "a JSON array of predictions")
    if len(items) != len(signals):
        raise InvalidRLPredictionException("predictions", f"{len(items)} items",
                                           f"exactly {len(signals)} (one per signal)")
    return [_item(s, i, item, latency_ms, timestamp_ns)
            for i, (s, item) in enumerate(zip(signals, items, strict=True))]


@dataclass(frozen=True, slots=True)
class BatchRoute:
    """Where a model takes batch requests, and how many signals one may carry."""

    url: str
    max_signals: int

    def __post_init__(self) -> None:
        if not 1 <= self.max_signals <= MAX_ADVERTISED_SIGNALS:
            raise ValueError(f"max_signals was {self.max_signals!r}, expected 1..."
                             f"{MAX_ADVERTISED_SIGNALS}")


def healthz_url(predict_url: str) -> str:
    """The health route next to the predict route: its last path segment replaced by
    ``healthz`` (``http://h:8888/predict`` → ``http://h:8888/healthz``)."""
    return urljoin(predict_url, "healthz")


def parse_capabilities(body: bytes, predict_url: str) -> BatchRoute | None:
    """The batch route a health answer advertises, or None (never raises: a health answer
    that is not JSON, has no or a malformed advertisement, a path off the model's own
    scheme/host/port, or a ``max_signals`` that is not an integer in 1..4096 means
    per-signal requests only)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    caps = data.get("capabilities") if isinstance(data, dict) else None
    batch = caps.get(BATCH_CAPABILITY) if isinstance(caps, dict) else None
    if not isinstance(batch, dict):
        return None
    path, max_signals = batch.get("path"), batch.get("max_signals")
    if (not isinstance(path, str) or not 0 < len(path) <= _MAX_PATH_CHARS
            or not path.isprintable() or any(c.isspace() for c in path)):
        return None
    if (isinstance(max_signals, bool) or not isinstance(max_signals, int)
            or not 1 <= max_signals <= MAX_ADVERTISED_SIGNALS):
        return None
    url = urljoin(predict_url, path)
    here, there = urlsplit(predict_url), urlsplit(url)
    if (there.scheme, there.netloc) != (here.scheme, here.netloc) or there.fragment:
        return None
    return BatchRoute(url, max_signals)

