"""What every route module of the HTTP transport shares: the JSON media type, the optional
``X-State-Digest`` header and ``portfolio`` query, a service reply as a response, and a core
``ValidationError`` as a 422 naming the request's field."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

from fastapi import Header, Query
from fastapi.responses import Response

from .._exceptions import ValidationError
from ..runtime.service import Reply
from .errors import FieldError

__all__ = ["JSON", "DigestHeader", "PortfolioQuery", "field_errors", "render"]

JSON = "application/json"
DigestHeader = Annotated[str | None, Header(alias="X-State-Digest",
                                            description="1: add the learned-state digest")]
PortfolioQuery = Annotated[str, Query(min_length=1, max_length=64,
                                      description="the portfolio's book")]


def render(reply: Reply) -> Response:
    """A service reply as the HTTP response: the journaled JSON body, with the decision's
    trace (if any) under its key."""
    body = reply.body
    if reply.trace_key is not None and reply.trace is not None:
        body = body[:-1] + f',"{reply.trace_key}":' + reply.trace + "}"
    return Response(body, media_type=JSON)


@contextlib.contextmanager
def field_errors(rename: dict[str, str]) -> Iterator[None]:
    """A core `ValidationError` raised by the service is a 422 naming the request field."""
    try:
        yield
    except ValidationError as err:
        raise FieldError.from_validation(("body",), err, rename) from None
