"""HTTP errors: a request field that is invalid becomes a 422 naming it (handlers in app.py)."""

from __future__ import annotations

import re
from typing import Any

from .._exceptions import ValidationError

__all__ = ["FieldError", "field_loc"]

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
