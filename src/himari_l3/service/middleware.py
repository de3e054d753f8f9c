"""The HTTP edge: request-size limit, body read timeout and per-request metrics (a pure
ASGI middleware), and `utf8_safe` for every string an error body echoes."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from ..events import HttpRequestServed
from ..observers import Observer

__all__ = ["EdgeMiddleware", "utf8_safe"]

Scope = dict[str, Any]
Message = dict[str, Any]

ENDPOINTS = frozenset({
    "/v1/size", "/v1/allocate", "/v1/outcomes", "/v1/returns", "/v1/fills", "/v1/positions",
    "/v1/intents", "/v1/trading-state", "/v1/prices", "/v1/state", "/metrics", "/healthz",
    "/openapi.json", "/docs", "/redoc",
})


def utf8_safe(text: str) -> str:
    """``text``, with anything UTF-8 cannot encode (lone surrogates, which a JSON body can
    carry as ``"\\ud800"``) written as a backslash escape, so a body echoing it encodes."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


class EdgeMiddleware:
    """Refuses bodies over ``max_bytes`` with 413 before the app reads them, answers 408 (and
    closes the connection) when a body is not received within ``body_timeout_sec``, and
    records ``http_requests{endpoint,code}`` / ``http_latency{endpoint}`` for every request
    (unknown paths are labelled ``other``: bounded labels).

    The body timeout covers the whole body, from the first ``receive`` to the last chunk: a
    client that declares a Content-Length and sends nothing (or trickles it) is cut off
    instead of holding the connection; the event loop serves other requests meanwhile."""

    def __init__(self, app: Any, *, max_bytes: int, observer: Observer,
                 body_timeout_sec: float = 10.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout_sec = body_timeout_sec
        self.observer = observer
        # The Prometheus observer defers metric writes and applies them in bulk when 4096
        # are pending: under load that is a 40-80 ms stall every ~0.5 s. Applying them after
        # each response is sent spreads the same work evenly instead.
        # (Observer.flush is a no-op for observers that defer nothing.)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        path = scope.get("path", "")
        endpoint = path if path in ENDPOINTS else "other"
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            declared = _content_length(scope)
            if declared is not None and declared > self.max_bytes:
                await self._too_large(send_wrapper)
                return
            if scope.get("method") in ("POST", "PUT", "PATCH"):
                try:
                    async with asyncio.timeout(self.body_timeout_sec):
                        body = await self._read_body(receive)
                except TimeoutError:
                    await self._refuse(send_wrapper, 408, "timeout",
                                       f"request body not received within service."
                                       f"body_read_timeout_sec ({self.body_timeout_sec:g} s)")
                    return
                if body is None:
                    await self._too_large(send_wrapper)
                    return
                receive = _replay(body, receive)
            await self.app(scope, receive, send_wrapper)
        finally:
            self.observer.emit(HttpRequestServed(endpoint, str(status["code"]),
                                                 time.perf_counter() - t0))
            self.observer.flush()

    async def _read_body(self, receive: Any) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _too_large(self, send: Any) -> None:
        await self._refuse(send, 413, "too_large", f"request body exceeds service."
                           f"max_request_bytes ({self.max_bytes} bytes)")

    @staticmethod
    async def _refuse(send: Any, status: int, kind: str, msg: str) -> None:
        """Answer ``status`` with a 4xx body naming the body, and close the connection (the
        rest of the body, if any, is never read)."""
        body = json.dumps({"detail": [{"loc": ["body"], "type": kind, "msg": msg,
                                       "input": None}]}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(body: bytes, original: Any) -> Any:
    """A ``receive`` that hands the buffered body over, then waits on the real channel
    (for the disconnect)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        message: Message = await original()
        return message

    return receive
