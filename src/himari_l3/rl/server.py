"""Reference RL model server: the `RLPolicy` behind the HTTP contract `TransformerRLClient` speaks.

Routes: ``POST /predict`` (a signal's fields plus optional ``market_data`` → ``position_pct``,
``confidence``, ``predicted_return``, ``predicted_volatility``, ``model_version``) and
``GET /healthz``. Bad input gets a 422 whose ``detail[].loc`` names the field, never a 500.

A `FaultInjector` can make the server misbehave on purpose (HTTP 500, hang, malformed or
out-of-range answers...), so the client's failure handling is tested against a real socket.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
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
from .policy import RLPolicy

__all__ = ["FAULT_MODES", "BackgroundRLServer", "FaultInjector", "create_rl_app", "serve_rl"]

FAULT_MODES: Final = ("ok", "http_500", "hang", "malformed", "out_of_range", "nan", "slow")

Unit = Annotated[float, Field(ge=0.0, le=1.0)]


class PredictRequest(BaseModel):
    """The request body (ranges as in `TacticalSignal`; NaN/inf rejected)."""

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
    market_data: dict[str, Any] | None = None


class PredictResponse(BaseModel):
    """The answer of the model."""

    position_pct: Annotated[float, Field(ge=-1.0, le=1.0)]
    confidence: Unit
    predicted_return: Annotated[float, Field(ge=-1.0, le=1.0)]
    predicted_volatility: Annotated[float, Field(ge=0.0, le=5.0)]
    model_version: str


@dataclass
class FaultInjector:
    """Switchable misbehaviour for tests; ``requests`` counts POST /predict hits (all modes).

    Modes: "ok"; "http_500"; "hang" (sleep ``hang_sec`` then answer); "malformed" (not JSON);
    "out_of_range" (position_pct 3.0); "nan" (a NaN literal in the JSON); "slow" (sleep
    ``slow_sec``, call ``on_slow`` — e.g. advance a test clock past the client's deadline —
    then answer normally).
    """

    mode: str = "ok"
    hang_sec: float = 1.0
    slow_sec: float = 0.0
    on_slow: Callable[[], None] | None = None
    requests: int = 0

    def reset(self) -> None:
        """Back to "ok": no slow-answer hook, no extra delay, request counter at zero."""
        self.set("ok")
        self.on_slow = None
        self.slow_sec = 0.0

    def set(self, mode: str) -> None:
        """Switch mode and zero the request counter."""
        if mode not in FAULT_MODES:
            raise ValueError(f"mode was {mode!r}, expected one of {FAULT_MODES}")
        self.mode, self.requests = mode, 0


def _unprocessable(field: str, message: str) -> JSONResponse:
    # Same shape as FastAPI's own 422s, so clients parse one format.
    return JSONResponse(status_code=422, content={"detail": [
        {"loc": ["body", field], "msg": message, "type": "value_error"}]})


def create_rl_app(policy: RLPolicy, fault: FaultInjector | None = None) -> FastAPI:
    """The FastAPI app serving ``policy`` (``fault``: optional fault injection for tests)."""
    app = FastAPI(title="HIMARI L3 reference RL model", version=policy.model_version)

    if fault is not None:
        @app.middleware("http")
        async def count_requests(request: Request, call_next: RequestResponseEndpoint) -> Response:
            if request.url.path == "/predict":
                fault.requests += 1  # only the server's loop thread writes it
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
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "model_version": policy.model_version}

    @app.post("/predict", response_model=PredictResponse)
    async def predict(request: PredictRequest) -> Any:
        try:
            signal = TacticalSignal(**request.model_dump(exclude={"market_data"}))
        except ValidationError as err:  # e.g. an unknown action or regime spelling
            return _unprocessable(err.field, str(err))
        mode = fault.mode if fault is not None else "ok"
        answer = policy.predict(signal)
        if mode == "http_500":
            return JSONResponse(status_code=500, content={"detail": "injected fault"})
        if mode == "hang" and fault is not None:
            await asyncio.sleep(fault.hang_sec)
        if mode == "malformed":
            return Response(content=b'{"position_pct": 0.1, "confidence', status_code=200,
                            media_type="application/json")
        if mode == "out_of_range":
            return JSONResponse({**answer, "position_pct": 3.0})
        if mode == "nan":
            body = b'{"position_pct": NaN, "confidence": 0.5, "predicted_return": 0.0, ' \
                   b'"predicted_volatility": 0.02, "model_version": "nan-model"}'
            return Response(content=body, media_type="application/json")
        if mode == "slow" and fault is not None:
            await asyncio.sleep(fault.slow_sec)
            if fault.on_slow is not None:
                fault.on_slow()
        return answer

    return app


def serve_rl(host: str = "127.0.0.1", port: int = 8888, model_path: str | Path | None = None,
             log_level: str = "info") -> None:
    """Serve the policy from ``model_path`` (default: the packaged model) until interrupted."""
    policy = RLPolicy.load(model_path) if model_path is not None else RLPolicy.default()
    uvicorn.run(create_rl_app(policy), host=host, port=port, log_level=log_level)


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
