"""Reference RL model server: the `RLPolicy` behind the HTTP contract `TransformerRLClient` speaks.

Routes (the contract: ``wire.py``, docs/deployment.md):

* ``POST /predict``: a signal's fields plus optional ``market_data`` → ``position_pct``,
  ``confidence``, ``predicted_return``, ``predicted_volatility``, ``model_version``;
* ``POST /predict/batch``: ``{"market_data": ..., "signals": [...]}`` (1 to ``max_batch``
  signals) → ``{"predictions": [...]}``, one per signal in order, each echoing its
  ``strategy_id`` and ``symbol``;
* ``GET /healthz``: status, model version and the capabilities, which advertise the batch
  route (``{"predict_batch": {"path": "/predict/batch", "max_signals": 256}}``; empty when
  served with ``batch=False``, as a per-signal-only model would).

Bad input gets a 422 whose ``detail[].loc`` names the field, never a 500.

A `FaultInjector` can make the server misbehave on purpose (HTTP 500, hang, malformed or
out-of-range answers, a batch answer one short or with one bad item...), so the client's
failure handling is tested against a real socket.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path
from typing import Annotated, Any, Final

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.middleware.base import RequestResponseEndpoint

from .._exceptions import ValidationError
from ..contracts import TacticalSignal
from .faults import FAULT_MODES, FaultInjector, batch_answer, single_answer
from .policy import RLPolicy

__all__ = ["BATCH_PATH", "FAULT_MODES", "MAX_BATCH", "BackgroundRLServer", "FaultInjector",
           "create_rl_app", "serve_rl"]

BATCH_PATH: Final = "/predict/batch"
MAX_BATCH: Final = 256

Unit = Annotated[float, Field(ge=0.0, le=1.0)]


class SignalFields(BaseModel):
    """A signal's fields (ranges as in `TacticalSignal`; NaN/inf rejected)."""

    model_config = ConfigDict(allow_inf_nan=False)

    strategy_id: Annotated[str, Field(min_length=1, max_length=64)]
    symbol: Annotated[str, Field(min_length=1, max_length=64)]
    action: str
    confidence: Unit
    risk_score: Unit
    regime: str
    timestamp_ns: Annotated[int, Field(ge=0)] = 0
    expected_return: Annotated[float, Field(ge=-1.0, le=1.0)] | None = None
    predicted_volatility: Annotated[float, Field(gt=0.0, le=5.0)] | None = None
    signal_strength: Unit | None = None
    sentiment_score: Unit | None = None
    sentiment_confidence: Unit | None = None


class PredictRequest(SignalFields):
    """The per-signal request body: the signal's fields plus ``market_data``."""

    market_data: dict[str, Any] | None = None


class BatchRequest(BaseModel):
    """The batch request body: ``market_data`` once, then the signals."""

    model_config = ConfigDict(allow_inf_nan=False)

    market_data: dict[str, Any] | None = None
    signals: list[SignalFields] = Field(min_length=1, max_length=MAX_BATCH)


class PredictResponse(BaseModel):
    """The answer of the model."""

    position_pct: Annotated[float, Field(ge=-1.0, le=1.0)]
    confidence: Unit
    predicted_return: Annotated[float, Field(ge=-1.0, le=1.0)]
    predicted_volatility: Annotated[float, Field(ge=0.0, le=5.0)]
    model_version: str


def _unprocessable(field: str, message: str) -> JSONResponse:
    # Same shape as FastAPI's own 422s, so clients parse one format.
    return JSONResponse(status_code=422, content={"detail": [
        {"loc": ["body", field], "msg": message, "type": "value_error"}]})


def create_rl_app(policy: RLPolicy, fault: FaultInjector | None = None, *,
                  batch: bool = True, max_batch: int = MAX_BATCH) -> FastAPI:
    """The FastAPI app serving ``policy`` (``fault``: optional fault injection for tests;
    ``batch=False``: no batch route and no advertisement, a per-signal-only model)."""
    if not 1 <= max_batch <= MAX_BATCH:
        raise ValueError(f"max_batch was {max_batch!r}, expected 1..{MAX_BATCH}")
    app = FastAPI(title="HIMARI L3 reference RL model", version=policy.model_version)
    capabilities = ({"predict_batch": {"path": BATCH_PATH, "max_signals": max_batch}}
                    if batch else {})

    if fault is not None:
        @app.middleware("http")
        async def count_requests(request: Request, call_next: RequestResponseEndpoint) -> Response:
            fault.count(request.method, request.url.path, BATCH_PATH)
            return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
        # FastAPI's default handler echoes the offending input, and a NaN in it cannot be
        # rendered as JSON (a 500). Field, message and type are all a client needs.
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        return JSONResponse(status_code=422, content={"detail": [
            {"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "")),
             "type": str(e.get("type", "value_error"))} for e in errors]})

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        if fault is not None and fault.health_hang_sec > 0:
            await asyncio.sleep(fault.health_hang_sec)
        return {"status": "ok", "model_version": policy.model_version,
                "capabilities": capabilities}

    @app.post("/predict", response_model=PredictResponse)
    async def predict(request: PredictRequest) -> Any:
        try:
            signal = TacticalSignal(**request.model_dump(exclude={"market_data"}))
        except ValidationError as err:  # e.g. an unknown action or regime spelling
            return _unprocessable(err.field, str(err))
        answer = policy.predict(signal)
        if fault is not None:
            fault.asked += 1
            await fault.delay()
        return single_answer(fault, answer) or answer

    if batch:
        _add_batch_route(app, policy, fault, max_batch)
    return app


def _add_batch_route(app: FastAPI, policy: RLPolicy, fault: FaultInjector | None,
                     max_batch: int) -> None:
    @app.post(BATCH_PATH)
    async def predict_batch(request: BatchRequest) -> Response:
        if len(request.signals) > max_batch:
            return _unprocessable("signals", f"{len(request.signals)} signals, at most "
                                  f"{max_batch} per request")
        items = []
        for i, fields in enumerate(request.signals):
            try:
                signal = TacticalSignal(**fields.model_dump())
            except ValidationError as err:  # e.g. an unknown action or regime spelling
                return _unprocessable(f"signals.{i}.{err.field}", str(err))
            items.append({"strategy_id": signal.strategy_id, "symbol": signal.symbol,
                          **policy.predict(signal)})
        if fault is not None:
            fault.asked += len(items)
            await fault.delay()
        return batch_answer(fault, items)


def serve_rl(host: str = "127.0.0.1", port: int = 8888, model_path: str | Path | None = None,
             log_level: str = "info", *, batch: bool = True) -> None:
    """Serve the policy from ``model_path`` (default: the packaged model) until interrupted
    (``batch=False``: per-signal route only, nothing advertised)."""
    policy = RLPolicy.load(model_path) if model_path is not None else RLPolicy.default()
    uvicorn.run(create_rl_app(policy, batch=batch), host=host, port=port, log_level=log_level)


class BackgroundRLServer:
    """Run an app under uvicorn in a daemon thread on ``127.0.0.1`` and a free port.

    For tests and examples: ``with BackgroundRLServer(create_rl_app(p)) as srv: srv.url``.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1") -> None:
        # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose
        # proto says TCP, and without it every keep-alive answer waits ~40 ms for delayed ACKs.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self.host, self.port = host, int(self._sock.getsockname()[1])
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1,
                                lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._sock]}, daemon=True,
                                        name=f"rl-server-{self.port}")

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_sec: float = 10.0) -> BackgroundRLServer:
        """Start and wait (bounded) until the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout_sec
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"RL server did not start within {timeout_sec:g}s")
            time.sleep(0.01)
        return self

    def stop(self, timeout_sec: float = 10.0) -> None:
        """Ask uvicorn to exit and join its thread."""
        self._server.should_exit = True
        self._thread.join(timeout_sec)
        self._sock.close()

    def __enter__(self) -> BackgroundRLServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
