"""The HTTP transport: the FastAPI routes over the service the composition root builds.

Endpoints (docs/service.md has examples): ``POST /v1/size``, ``POST /v1/allocate``,
``POST /v1/outcomes``, ``POST /v1/returns``, ``POST /v1/fills``, ``PUT /v1/positions``,
``POST /v1/trading-state``, ``POST /v1/prices`` (bearer token if one is configured),
``GET /v1/positions``, ``GET /v1/intents``, ``GET /v1/trading-state`` (``trading.py``),
``GET /v1/state``, ``GET /metrics``, ``GET /healthz``, OpenAPI at ``/openapi.json`` and
``/docs``. A bad request is a 4xx whose ``detail[].loc`` names the field; a 500 only ever
means a bug (and is logged).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException

from .._clock import Clock
from .._exceptions import ConfigError
from .._version import __version__
from ..bootstrap.service import build_service
from ..config.schema import Layer3Config
from ..contracts import CascadeIndicators, TacticalSignal
from ..persistence import Store
from ..runtime.heap import settle_heap
from ..runtime.jsonio import dumps
from ..runtime.service import SizingService
from .errors import FieldError, install_error_handlers
from .middleware import EdgeMiddleware
from .models import (
    AllocateRequest,
    FillsRequest,
    OutcomeRequest,
    PositionsRequest,
    ReturnsRequest,
    SizeRequest,
    to_cascade,
    to_signal,
)
from .openapi import PROMETHEUS_TEXT, Api, PrometheusText, error, json_object
from .rendering import JSON as _JSON
from .rendering import DigestHeader as _Digest
from .rendering import PortfolioQuery as _Portfolio
from .rendering import field_errors as _fields
from .rendering import render
from .trading import trading_routes

__all__ = ["AUTH_TOKEN_ENV", "create_app"]

log = logging.getLogger(__name__)

AUTH_TOKEN_ENV = "HIMARI_L3_AUTH_TOKEN"


def create_app(config: Layer3Config, *, config_path: str | None = None,
               registry: CollectorRegistry | None = None, store: Store | None = None,
               clock: Clock | None = None) -> FastAPI:
    """The HTTP transport over a service built by the composition root
    (``bootstrap.build_service``): routes, authentication, error rendering.

    Learned state is restored from the store when the app starts (lifespan); at shutdown a
    final snapshot is written, the reloader stopped and the RL client closed. A store passed
    in is not closed by the app. Each app has its own metric registry.
    """
    registry = registry if registry is not None else CollectorRegistry()
    svc = build_service(config, config_path=config_path, registry=registry, store=store,
                        clock=clock)
    token = os.environ.get(AUTH_TOKEN_ENV) or config.service.auth_token
    problem = config.service.model_copy(update={"auth_token": token}).token_problem()
    if problem is not None:
        raise ConfigError(problem)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await svc.start()
        if app.state.freeze_gc:
            settle_heap()  # the long-running process's collector settings (runtime/heap.py)
        try:
            yield
        finally:
            await svc.stop()

    app = FastAPI(title="HIMARI Layer 3 position sizing", version=__version__,
                  lifespan=lifespan,
                  description="Risk-adjusted, capped, explainable position sizing.")
    app.state.service = svc
    app.state.registry = registry
    app.state.reloader = svc.reloader
    app.state.freeze_gc = False  # run_service sets it: process-wide, so not for tests
    app.add_middleware(EdgeMiddleware, max_bytes=config.service.max_request_bytes,
                       observer=svc.observer,
                       body_timeout_sec=config.service.body_read_timeout_sec)
    install_error_handlers(app)

    api = Api(app, token, protect_reads=config.service.protect_read_endpoints)
    app.state.api = api  # routes added later (other transports' endpoints) use it too
    _sizing_routes(api, svc, config.service.max_signals_per_request)
    _book_routes(api, svc)
    _learning_routes(api, svc)
    trading_routes(api, svc)
    _operations_routes(api, svc, config, registry)
    return app


def _skew_ns(svc: SizingService) -> int:
    """How far a signal's timestamp may lead the request's time (live: follows reloads)."""
    return round(svc.config.portfolio.max_signal_clock_skew_sec * 1e9)


def _sizing_routes(api: Api, svc: SizingService, max_signals: int) -> None:
    base_clock = svc.clock.base

    def signals_max_items(doc: dict[str, Any]) -> None:
        schema = doc["components"]["schemas"]["AllocateRequest"]["properties"]["signals"]
        schema["maxItems"] = max_signals

    api.patches.append(signals_max_items)

    @api.write("/v1/size", tags=["sizing"])
    async def size(body: SizeRequest, x_state_digest: _Digest = None) -> Response:
        """Size one signal with Phase 1 (Kelly -> conformal -> sentiment -> regime ->
        cascade -> caps). The decision and its diagnostics are stored before the reply."""
        now = base_clock.time_ns()
        signal = to_signal(body.signal, ("body", "signal"), now, None, _skew_ns(svc))
        cascade = to_cascade(body.cascade, ("body", "cascade"))
        with _fields(_SIZE_FIELDS):
            return render(await svc.size(signal, cascade, body.price,
                                         body.current_position_usd, body.portfolio_value,
                                         x_state_digest == "1"))

    @api.write("/v1/allocate", tags=["sizing"])
    async def allocate(body: AllocateRequest, x_state_digest: _Digest = None) -> Response:
        """Allocate a batch through Phase 3: the Phase 2 baseline, blended with the RL model
        when enabled (fallback to the baseline on any RL problem), inside every limit."""
        signals, cascade, request = _allocation_inputs(body, max_signals,
                                                       base_clock.time_ns(), _skew_ns(svc))
        with _fields({}):
            return render(await svc.allocate(signals, cascade, dict(body.prices),
                                             x_state_digest == "1", request,
                                             portfolio=body.portfolio, mode=body.mode))


def _allocation_inputs(body: AllocateRequest, max_signals: int, now: int,
                       skew_ns: int) -> tuple[
        list[TacticalSignal], dict[str, CascadeIndicators], dict[str, Any]]:
    """The batch's contracts, and the request as it is journaled (timestamps filled in);
    a missing price or cascade reading for a signal's symbol is a 422 naming it."""
    if len(body.signals) > max_signals:
        raise FieldError(("body", "signals"), f"signals had {len(body.signals)} items, "
                         f"expected at most service.max_signals_per_request "
                         f"({max_signals})", len(body.signals))
    raw: list[dict[str, Any]] = []
    signals = [to_signal(s, ("body", "signals", i), now, raw, skew_ns)
               for i, s in enumerate(body.signals)]
    cascade = {sym: to_cascade(c, ("body", "cascade", sym)) for sym, c in body.cascade.items()}
    for i, s in enumerate(signals):
        if s.symbol not in body.prices:
            raise FieldError(("body", "prices", s.symbol), f"prices.{s.symbol} is missing "
                             f"(signals[{i}] is for {s.symbol})")
        if s.symbol not in cascade:
            raise FieldError(("body", "cascade", s.symbol), f"cascade.{s.symbol} is "
                             f"missing (signals[{i}] is for {s.symbol})")
    request = {"signals": raw, "prices": dict(body.prices),
               "cascade": {sym: c.model_dump() for sym, c in sorted(body.cascade.items())}}
    return signals, cascade, request


def _book_routes(api: Api, svc: SizingService) -> None:
    @api.write("/v1/fills", tags=["book"])
    async def fills(body: FillsRequest, x_state_digest: _Digest = None) -> Response:
        """Fills of the book's intents. Every fill is checked before any is applied (an
        unknown order, the wrong side or symbol, an over-fill: a 422 naming the field, and
        nothing changes); a re-sent fill is recognised and changes nothing."""
        with _fields({}):
            return render(await svc.fills([f.model_dump() for f in body.fills],
                                          x_state_digest == "1"))

    @api.write("/v1/positions", tags=["book"], method="PUT")
    async def reconcile(body: PositionsRequest, x_state_digest: _Digest = None) -> Response:
        """An authoritative positions snapshot: the book takes it, reports every difference
        (also as metrics and in the log), and re-plans its intents."""
        snapshot = {"positions": {s: p.model_dump() for s, p in body.positions.items()},
                    "cash": body.cash, "timestamp_ns": body.timestamp_ns}
        with _fields({}):
            return render(await svc.reconcile(body.portfolio, snapshot, x_state_digest == "1"))

    @api.read("/v1/positions", tags=["book"], query=True,
              ok="positions, cash, equity, exposures, PnL, standing targets")
    async def positions(portfolio: _Portfolio = "default") -> Response:
        """Positions, cash, equity, exposures (USD and % of equity), PnL, standing targets."""
        return Response(dumps(await svc.read_positions(portfolio)), media_type=_JSON)

    @api.read("/v1/intents", tags=["book"], query=True,
              ok="the portfolio's open intents, with what has been filled of each")
    async def intents(portfolio: _Portfolio = "default") -> Response:
        """The portfolio's open intents, with what has been filled of each."""
        return Response(dumps(await svc.read_intents(portfolio)), media_type=_JSON)


def _learning_routes(api: Api, svc: SizingService) -> None:
    @api.write("/v1/outcomes", tags=["learning"])
    async def outcomes(body: OutcomeRequest, x_state_digest: _Digest = None) -> Response:
        """Record a realised return (see the request schema for the two kinds)."""
        if body.strategy_id is None:
            for name in ("predicted_return", "predicted_volatility"):
                if getattr(body, name) is not None:
                    raise FieldError(("body", name), f"{name} needs strategy_id",
                                     getattr(body, name))
        with _fields(_OUTCOME_FIELDS):
            return render(await svc.outcome(body.symbol, body.realized_return,
                                            body.strategy_id, body.used_rl,
                                            body.predicted_return, body.predicted_volatility,
                                            x_state_digest == "1"))

    @api.write("/v1/returns", tags=["learning"])
    async def returns(body: ReturnsRequest, x_state_digest: _Digest = None) -> Response:
        """Add one time-aligned row of per-symbol returns to the correlation monitor."""
        with _fields({}):
            return render(await svc.returns(dict(body.returns), body.timestamp_ns,
                                            x_state_digest == "1"))


def _operations_routes(api: Api, svc: SizingService, config: Layer3Config,
                       registry: CollectorRegistry) -> None:
    @api.read("/v1/state", tags=["operations"], query=True,
              ok="the summary (bounded), journal and snapshot positions, reload status")
    async def state(learned: bool = False, digest: bool = False) -> Response:
        """Hybrid summary, journal and snapshot positions, config reload status;
        ``learned=true`` adds the full learned state, ``digest=true`` its SHA-256."""
        out = await svc.read_state(learned=learned, digest=digest)
        rl = svc.reloader
        out["config_reload"] = None if rl is None else {
            "path": str(rl.path), "version": rl.version, "reloads_ok": rl.reloads_ok,
            "reloads_failed": rl.reloads_failed, "last_error": rl.last_error}
        return Response(dumps(out), media_type=_JSON)

    @api.read("/metrics", tags=["operations"], media=PROMETHEUS_TEXT,
              ok="Prometheus text exposition of this app's registry (himari_l3_*, process_*, "
                 "python_*)",
              also={404: error("metrics are disabled (metrics.enabled: false)")})
    async def metrics() -> Response:
        """Prometheus text exposition of this app's registry (``himari_l3_*``)."""
        if not config.metrics.enabled:
            raise HTTPException(404, "metrics are disabled (metrics.enabled: false)")
        return PrometheusText(generate_latest(registry))

    @api.read("/healthz", tags=["operations"], protected=False,
              ok="requests are being accepted",
              also={503: json_object("degraded: the store cannot commit")})
    async def healthz() -> Response:
        """200 when requests are being accepted; 503 while the store is unavailable."""
        ok = not svc.degraded
        body = {"status": "ok" if ok else "degraded", "journal_seq": svc.seq,
                "config_version": svc.config_version}
        return Response(dumps(body), status_code=200 if ok else 503, media_type=_JSON)


# The core names a field by its parameter name; the request names some differently.
_SIZE_FIELDS = {"signal": "signal", "cascade_indicators": "cascade", "current_price": "price"}
_OUTCOME_FIELDS = {"actual_return": "realized_return"}

