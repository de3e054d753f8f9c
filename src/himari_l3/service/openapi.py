"""Routes whose OpenAPI description is what the server really does.

Every route of the HTTP API is declared through `Api` (``api.write`` for a state-changing
POST, ``api.read`` for a GET), which attaches, in one place:

* the bearer security scheme and the token check, when a token is configured (reads only
  when ``service.protect_read_endpoints``);
* every status code the operation can return, with its media type and body schema — the
  edge's 400 (a body that is not decodable JSON), 401, 408 (body read timeout), 413 (body
  too large), 422 (a field out of range, naming it), 503 (store unavailable) and 500 (a bug,
  logged) for writes; 401 / 413 / 422 / 500 for reads;
* the request models' numeric ranges come from their ``Field`` constraints
  (``service/models.py``), the cross-field rules from their descriptions.

A new endpoint (positions, fills, intents, trading state...) inherits all of it by being
declared with ``api.write`` / ``api.read``; ``tests/integration/service/test_openapi.py``
fails for a route declared otherwise, and a schemathesis run checks the document against
the server.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Security
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from .._validate import INT64_MAX

__all__ = ["JSON", "PROMETHEUS_TEXT", "Api", "ErrorBody", "ErrorItem", "PrometheusText",
           "error", "json_object", "status_codes"]

JSON = "application/json"
# The classic Prometheus text format (what `generate_latest` writes with underscore
# escaping, and what every Prometheus server reads).
PROMETHEUS_TEXT = CONTENT_TYPE_PLAIN_0_0_4

Handler = Callable[..., Any]
# The security scheme (module level: FastAPI resolves the handler's annotations here).
_BEARER = HTTPBearer(auto_error=False, scheme_name="bearer",
                     description="service.auth_token (or HIMARI_L3_AUTH_TOKEN)")


class ErrorItem(BaseModel):
    """One problem with a request: where (``loc``: "body" then the field's path; "query",
    "header"), what (``msg``, ``type``) and the value sent (``input``)."""

    loc: list[str | int]
    msg: str
    type: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    """Every error response: a list of problems naming the field, or one sentence."""

    detail: list[ErrorItem] | str = Field(
        description="the problems (4xx about the request) or what went wrong")


class PrometheusText(Response):
    """``GET /metrics``'s response class (its media type goes into the document)."""

    media_type = PROMETHEUS_TEXT


def json_object(description: str) -> dict[str, Any]:
    """A response entry: a JSON object (not an error body)."""
    return {"description": description, "content": {JSON: {"schema": {"type": "object"}}}}


def error(description: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A response entry: an `ErrorBody` as JSON whatever the route's own media type
    (``headers``: name -> what it carries). The schema is added by `Api.openapi`."""
    out: dict[str, Any] = {"description": description, "content": {JSON: {"schema": {
        "$ref": "#/components/schemas/ErrorBody"}}}}
    if headers:
        out["headers"] = {name: {"description": text, "schema": {"type": "string"}}
                          for name, text in headers.items()}
    return out


_BAD_BODY = error("the body is not decodable JSON: invalid UTF-8, or nested deeper than "
                   "the parser allows (a JSON syntax error is a 422 at loc [body, offset])")
_UNAUTHORISED = error("missing or wrong bearer token",
                       {"WWW-Authenticate": "Bearer"})
_TIMEOUT = error("the body did not arrive within service.body_read_timeout_sec "
                  "(the connection is closed)", {"Connection": "close"})
_TOO_LARGE = error("the body is larger than service.max_request_bytes",
                    {"Connection": "close"})
_INVALID = error("a field is missing, has the wrong JSON type, or is out of range "
                  "(NaN and Infinity included): ``loc`` names it, ``msg`` says the range")
_UNAVAILABLE = error("the store could not commit: the request was not acknowledged; "
                      "retry", {"Retry-After": "seconds to wait (1)"})
_INTERNAL = error("a bug (logged with its traceback); nothing was acknowledged")


class Api:
    """Declares the service's routes with their real responses and security (see the
    module docstring). ``token``: the bearer token (None: no authentication);
    ``protect_reads``: the reads need it too."""

    def __init__(self, app: FastAPI, token: str | None, *, protect_reads: bool) -> None:
        self.app = app
        self.token = token
        self.write_auth = self._auth() if token is not None else []
        self.read_auth = self.write_auth if protect_reads else []
        # Changes to the generated document that depend on the running config (e.g. a
        # list's maxItems from service.max_signals_per_request).
        self.patches: list[Callable[[dict[str, Any]], None]] = []
        app.openapi = self.openapi  # type: ignore[method-assign]

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document plus the error schemas and the patches (built once)."""
        app = self.app
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version,
                              description=app.description, routes=app.routes)
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            error_schema = ErrorBody.model_json_schema(
                ref_template="#/components/schemas/{model}")
            schemas.update(error_schema.pop("$defs", {}))
            schemas["ErrorBody"] = error_schema
            _exact_integer_bounds(doc)
            for patch in self.patches:
                patch(doc)
            app.openapi_schema = doc
        return app.openapi_schema

    def _auth(self) -> list[Any]:
        token = (self.token or "").encode()

        async def require_token(credentials: Annotated[
                HTTPAuthorizationCredentials | None, Security(_BEARER)]) -> None:
            given = b"" if credentials is None else credentials.credentials.encode()
            if not hmac.compare_digest(given, token):  # constant time
                raise HTTPException(401, "missing or wrong bearer token",
                                    headers={"WWW-Authenticate": "Bearer"})

        return [Depends(require_token)]

    def write(self, path: str, *, tags: list[str | Enum],
              method: str = "POST") -> Callable[[Handler], Handler]:
        """A state-changing request with a JSON body (``POST``, or ``PUT``)."""
        responses: dict[int | str, dict[str, Any]] = {
            200: json_object("decided (or learned), journaled, then acknowledged"),
            400: _BAD_BODY, 408: _TIMEOUT, 413: _TOO_LARGE, 422: _INVALID,
            500: _INTERNAL, 503: _UNAVAILABLE}
        if self.write_auth:
            responses[401] = _UNAUTHORISED
        route = self.app.put if method == "PUT" else self.app.post
        return route(path, dependencies=self.write_auth, tags=tags, responses=responses)

    def read(self, path: str, *, tags: list[str | Enum], ok: str,
             media: str = JSON, also: dict[int, dict[str, Any]] | None = None,
             protected: bool = True, query: bool = False) -> Callable[[Handler], Handler]:
        """A ``GET``. ``ok``: what its 200 means; ``media``: its media type; ``also``: other
        responses it gives (code -> `error` or `json_object` entry); ``protected``: under
        ``service.protect_read_endpoints`` (False for probes); ``query``: it has query
        parameters (so a 422 for a bad one)."""
        auth = self.read_auth if protected else []
        responses: dict[int | str, dict[str, Any]] = {
            200: (json_object(ok) if media == JSON else
                  {"description": ok, "content": {media: {"schema": {"type": "string"}}}}),
            413: _TOO_LARGE, 500: _INTERNAL}
        if query:
            responses[422] = _INVALID
        if auth:
            responses[401] = _UNAUTHORISED
        for code, entry in (also or {}).items():
            responses[code] = entry
        return self.app.get(path, dependencies=auth, tags=tags, responses=responses,
                             response_class=PrometheusText if media != JSON else Response)


def _exact_integer_bounds(node: Any) -> None:
    """FastAPI's document model stores ``maximum`` as a float: int64's bound 2**63 - 1 came
    out as 9.223372036854776e18 (= 2**63). Put the exact integer back."""
    if isinstance(node, dict):
        for key in ("maximum", "minimum"):
            if node.get(key) == float(INT64_MAX) and node.get("type") == "integer":
                node[key] = INT64_MAX
        for value in node.values():
            _exact_integer_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _exact_integer_bounds(value)


def status_codes(app: FastAPI) -> dict[tuple[str, str], set[str]]:
    """(method, path) -> the status codes the document declares (for tests and audits)."""
    out: dict[tuple[str, str], set[str]] = {}
    for path, item in app.openapi()["paths"].items():
        for method, op in item.items():
            out[(method.upper(), path)] = set(op.get("responses", {}))
    return out
