"""HTTP errors: how every failure of a request is rendered (the shapes the OpenAPI document
declares, ``service/openapi.py``).

* a request field that is invalid: 422 naming it (`FieldError`, pydantic's validation);
* a body that is not decodable JSON (invalid UTF-8, nesting deeper than the parser allows):
  400 naming the body;
* authentication and routing (`HTTPException`): their status, ``{"detail": "..."}``;
* the store cannot commit: 503 with ``Retry-After``; anything else: 500, logged.

Every echoed input is made encodable first (`jsonable`): an error body never fails.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.routing import Match

from .._exceptions import ValidationError
from ..events import InputKind, InputRejected
from ..runtime.errors import PersistenceUnavailable
from .middleware import utf8_safe

__all__ = ["FieldError", "field_loc", "install_error_handlers", "jsonable"]

log = logging.getLogger(__name__)

_INDEXED = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\[(.+)\]$")


class FieldError(Exception):
    """A request field is invalid: becomes a 422 whose ``loc`` names it."""

    def __init__(self, loc: tuple[str | int, ...], msg: str, value: Any = None) -> None:
        super().__init__(msg)
        self.loc = loc
        self.msg = msg
        self.value = value

    @classmethod
    def from_validation(cls, prefix: tuple[str | int, ...], err: ValidationError,
                        rename: dict[str, str] | None = None) -> FieldError:
        """Map a core `ValidationError` (``field``/``value``/``expected``) under ``prefix``
        (at its ``path`` when it carries one: a field inside a list or a mapping)."""
        loc = err.path if err.path is not None else field_loc(err.field, rename)
        name = ".".join(str(p) for p in loc)
        return cls((*prefix, *loc), f"{name} was {err.value!r}, expected {err.expected}",
                   err.value)

    def detail(self) -> list[dict[str, Any]]:
        return [{"loc": list(self.loc), "msg": self.msg, "type": "value_error",
                 "input": self.value}]


def field_loc(field: str, rename: dict[str, str] | None = None) -> tuple[str, ...]:
    """``"returns[BTC-USD]"`` -> ``("returns", "BTC-USD")``; renames the first part."""
    m = _INDEXED.match(field)
    parts = (m.group(1), m.group(2)) if m else (field,)
    if rename and parts[0] in rename:
        parts = (rename[parts[0]], *parts[1:])
    return parts


_INPUT_KINDS = {"signal": "signal", "signals": "signal", "cascade": "cascade",
                "price": "price", "prices": "price", "returns": "returns", "fills": "fill",
                "positions": "positions"}


def _count_invalid(request: Request, loc: tuple[Any, ...] | list[Any]) -> None:
    """Count a rejected input in ``himari_l3_invalid_inputs_total{kind}`` (bounded kinds)."""
    parts = [str(p) for p in loc if p != "body"]
    kind = next((_INPUT_KINDS[p] for p in parts if p in _INPUT_KINDS), None)
    if kind is None:
        kind = "outcome" if request.url.path.endswith("/outcomes") else "request"
    service = getattr(request.app.state, "service", None)
    if service is not None:
        service.observer.emit(InputRejected(InputKind(kind), ".".join(parts)))


def install_error_handlers(app: FastAPI) -> None:
    """Render every failure as the document says (see the module docstring)."""
    async def field_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, FieldError)
        _count_invalid(request, exc.loc)
        return JSONResponse({"detail": jsonable(exc.detail())}, 422)

    async def request_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        detail = [{"loc": list(e.get("loc", ())), "msg": _message(e),
                   "type": e.get("type", ""), "input": e.get("input")} for e in exc.errors()]
        _count_invalid(request, detail[0]["loc"] if detail else [])
        return JSONResponse({"detail": jsonable(detail)}, 422)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 400 and exc.__cause__ is not None:
            # FastAPI's "error parsing the body": say why, naming the body.
            _count_invalid(request, ["body"])
            return JSONResponse({"detail": [{"loc": ["body"], "type": "json_invalid",
                                             "msg": _undecodable(exc.__cause__),
                                             "input": None}]}, 400)
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": _allowed(request)}
        return JSONResponse({"detail": jsonable(exc.detail)}, exc.status_code,
                            headers=headers)

    async def unavailable(_: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": jsonable(str(exc))}, 503, headers={"Retry-After": "1"})

    async def internal(request: Request, exc: Exception) -> Response:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error"}, 500)

    app.add_exception_handler(FieldError, field_error)
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(PersistenceUnavailable, unavailable)
    app.add_exception_handler(Exception, internal)


def jsonable(value: Any) -> Any:
    """Inputs echoed in errors may be anything the JSON parser produced (or bytes); every
    string comes out encodable as UTF-8 (a lone surrogate such as "\\ud800", which JSON
    escapes can carry, would otherwise turn the 422 into a 500)."""
    if isinstance(value, dict):
        return {utf8_safe(str(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN is not JSON: echo it as text ("nan", "inf")
    if isinstance(value, str):
        return utf8_safe(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return utf8_safe(repr(value))


_BOUNDS = {"greater_than_equal": ("ge", ">="), "greater_than": ("gt", ">"),
           "less_than_equal": ("le", "<="), "less_than": ("lt", "<")}


def _message(error: Any) -> str:
    """pydantic's message; for a range error, in the contracts' words: "confidence was 1.7,
    expected confidence <= 1" (the field, the value and the bound)."""
    kind = _BOUNDS.get(error.get("type", ""))
    ctx = error.get("ctx") or {}
    loc = error.get("loc") or ()
    if kind is None or kind[0] not in ctx or not loc:
        return str(error.get("msg", ""))
    name = str(loc[-1])
    return f"{name} was {error.get('input')!r}, expected {name} {kind[1]} {ctx[kind[0]]}"


def _allowed(request: Request) -> str:
    """Every method some route serves at the request's path (Starlette's 405 names only the
    methods of the first route that matched the path, e.g. PUT for /v1/positions, which
    GET serves too)."""
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        route_methods = getattr(route, "methods", None)
        if match is not Match.NONE and route_methods:
            methods |= set(route_methods)
    return ", ".join(sorted(methods))


def _undecodable(cause: BaseException) -> str:
    if isinstance(cause, UnicodeDecodeError):
        return (f"the body is not JSON in UTF-8: {cause.reason} at byte {cause.start}")
    if isinstance(cause, RecursionError):
        return "the body nests JSON arrays or objects deeper than the parser allows"
    return f"the body could not be parsed as JSON ({type(cause).__name__})"
