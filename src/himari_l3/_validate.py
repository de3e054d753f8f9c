"""Small, fast field checks shared by the contracts (hot path: no pydantic here)."""

from __future__ import annotations

import math

from ._exceptions import ValidationError

# The ranges every edge accepts for the inputs that scale a size (docs/service.md). Generous
# for any traded asset, and tight enough that every output is finite by construction: units
# = USD / price <= 1e13 / 1e-12; a take-profit <= price · (1 + 50 · 5); sizes <= equity.
MAX_PORTFOLIO_VALUE = 1e13  # USD of equity (also Layer3Config.portfolio_value's bound)
# quote units per unit of the asset (the book's fills and marks have the same upper bound)
MIN_PRICE, MAX_PRICE = 1e-12, 1e12
MAX_POSITION_USD = 1e15  # |a held position| in USD (100 x the largest equity)
INT64_MAX = 2**63 - 1  # timestamps are int64 nanoseconds (the journal's column type)


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


def price(exc: type[ValidationError], field: str, value: object) -> float:
    """A price: finite and ``MIN_PRICE <= value <= MAX_PRICE``."""
    if type(value) is float and MIN_PRICE <= value <= MAX_PRICE:
        return value  # the common case (a float compares False with NaN)
    return in_range(exc, field, value, MIN_PRICE, MAX_PRICE)


def equity(exc: type[ValidationError], field: str, value: object) -> float:
    """A portfolio value: finite and ``0 < value <= MAX_PORTFOLIO_VALUE``."""
    return positive(exc, field, value, MAX_PORTFOLIO_VALUE)


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
