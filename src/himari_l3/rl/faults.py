"""Switchable misbehaviour of the reference RL server, so the client's failure handling is
tested against a real socket (``server.py`` applies it to both predict routes)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from fastapi import Response
from fastapi.responses import JSONResponse

__all__ = ["FAULT_MODES", "FaultInjector", "batch_answer", "single_answer"]

FAULT_MODES: Final = ("ok", "http_500", "hang", "malformed", "out_of_range", "nan", "slow",
                      "short", "bad_item")
_MALFORMED: Final = b'{"position_pct": 0.1, "confidence'


@dataclass
class FaultInjector:
    """Switchable misbehaviour for tests. Counters (all modes): ``requests`` POST /predict,
    ``batch_requests`` POST /predict/batch, ``health_requests`` GET /healthz, and ``asked``
    the valid signals asked for over both predict routes (one per signal in a batch).

    Modes, per signal / per batch: "ok"; "http_500" (the status 500); "hang" (sleep
    ``hang_sec`` then answer); "malformed" (not JSON); "out_of_range" (position_pct 3.0, in
    every item of a batch); "nan" (a NaN literal, in every item); "slow" (sleep ``slow_sec``,
    call ``on_slow`` — e.g. advance a test clock past the client's deadline — then answer
    normally); "short" (a batch answer one prediction short; per signal: normal);
    "bad_item" (a batch answer whose first item is out of range; per signal: normal).
    ``health_hang_sec`` > 0 makes GET /healthz sleep that long first (a model hanging at
    start).
    """

    mode: str = "ok"
    hang_sec: float = 1.0
    slow_sec: float = 0.0
    on_slow: Callable[[], None] | None = None
    requests: int = 0
    batch_requests: int = 0
    health_requests: int = 0
    health_hang_sec: float = 0.0
    asked: int = 0

    def reset(self) -> None:
        """Back to "ok": no slow-answer hook, no extra delay, counters at zero."""
        self.set("ok")
        self.on_slow = None
        self.slow_sec = 0.0
        self.health_hang_sec = 0.0

    def set(self, mode: str) -> None:
        """Switch mode and zero the request counters."""
        if mode not in FAULT_MODES:
            raise ValueError(f"mode was {mode!r}, expected one of {FAULT_MODES}")
        self.mode, self.requests, self.batch_requests, self.health_requests = mode, 0, 0, 0
        self.asked = 0

    def count(self, method: str, path: str, batch_path: str) -> None:
        """Count one request (only the server's loop thread calls it)."""
        if method == "POST" and path == "/predict":
            self.requests += 1
        elif method == "POST" and path == batch_path:
            self.batch_requests += 1
        elif method == "GET" and path == "/healthz":
            self.health_requests += 1

    async def delay(self) -> None:
        """The "hang" and "slow" modes' wait (and the slow hook)."""
        if self.mode == "hang":
            await asyncio.sleep(self.hang_sec)
        elif self.mode == "slow":
            await asyncio.sleep(self.slow_sec)
            if self.on_slow is not None:
                self.on_slow()


def _json(content: Any) -> Response:
    # allow_nan: the "nan" mode sends the NaN literal a careless model would.
    return Response(content=json.dumps(content, allow_nan=True), media_type="application/json")


def single_answer(fault: FaultInjector | None, answer: dict[str, Any]) -> Response | None:
    """The per-signal route's faulty response, or None to answer normally."""
    mode = fault.mode if fault is not None else "ok"
    if mode == "http_500":
        return JSONResponse(status_code=500, content={"detail": "injected fault"})
    if mode == "malformed":
        return Response(content=_MALFORMED, media_type="application/json")
    if mode == "out_of_range":
        return _json({**answer, "position_pct": 3.0})
    if mode == "nan":
        return _json({**answer, "position_pct": float("nan")})
    return None


def batch_answer(fault: FaultInjector | None, items: list[dict[str, Any]]) -> Response:
    """The batch route's response for ``items`` (the policy's answers), with any fault."""
    mode = fault.mode if fault is not None else "ok"
    if mode == "http_500":
        return JSONResponse(status_code=500, content={"detail": "injected fault"})
    if mode == "malformed":
        return Response(content=_MALFORMED, media_type="application/json")
    if mode in ("out_of_range", "nan"):
        bad = 3.0 if mode == "out_of_range" else float("nan")
        items = [{**item, "position_pct": bad} for item in items]
    elif mode == "short":
        items = items[:-1]
    elif mode == "bad_item":
        items = [{**items[0], "position_pct": 3.0}, *items[1:]]
    return _json({"predictions": items})
