"""Small, fast field checks shared by the contracts (hot path: no pydantic here)."""

from __future__ import annotations

import math

from ._exceptions import ValidationError


def finite(exc: type[ValidationError], field: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite real number, else raise ``exc``."""
    if type(value) is float and value - value == 0.0:
        return value  # the common case, checked cheaply (x - x is NaN for NaN and +-inf)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise exc(field, value, "a finite number")
    v = float(value)
    if not math.isfinite(v):
        raise exc(field, value, "a finite number")
    return v


def in_range(
    exc: type[ValidationError], field: str, value: object, lo: float, hi: float
) -> float:
    """Finite and ``lo <= value <= hi``."""
    v = finite(exc, field, value)
    if not lo <= v <= hi:
        raise exc(field, value, f"{lo:g} <= {field} <= {hi:g}")
    return v


def positive(exc: type[ValidationError], field: str, value: object, hi: float = math.inf) -> float:
    """Finite and ``0 < value <= hi``."""
    if type(value) is float and 0.0 < value <= hi and value - value == 0.0:
        return value  # the common case, without the general checks below
    v = finite(exc, field, value)
    if not 0.0 < v <= hi:
        raise exc(field, value, f"0 < {field} <= {hi:g}")
    return v


def optional_in_range(
    exc: type[ValidationError], field: str, value: object, lo: float, hi: float
) -> float | None:
    """``None`` stays ``None`` (absent); anything else must be finite and in range."""
    return None if value is None else in_range(exc, field, value, lo, hi)


def nonempty_str(exc: type[ValidationError], field: str, value: object, max_len: int = 64) -> str:
    """A non-empty printable string of at most ``max_len`` characters."""
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise exc(field, value, f"a non-empty string of at most {max_len} characters")
    if not value.isprintable():
        raise exc(field, value, "printable characters only")
    return value
