"""Stream entries as messages, and the typed reads every parser shares (pure: no Redis).

A Redis stream entry is a flat map of byte strings. Layer 1 and Layer 2 write messages in one
of two shapes, and both are accepted (`decode_entry`):

* **fields**: each message field is an entry field, its value a string as ``XADD`` stores it
  (``"0.75"``, ``"true"``, ``"BTCUSDT"``; a JSON-encoding writer's ``"null"`` is absent);
* **data**: one field ``data`` holding the whole message as a JSON object.

The readers (`text`, `number`, `integer`, `flag`) turn a field into a typed value or raise
`MessageRejected`, which names the field, the value and what was expected, with a bounded
``code`` (the dead-letter reason, a metric label). NaN and infinities are never numbers here.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MessageRejected",
    "RejectCode",
    "decode_entry",
    "flag",
    "integer",
    "number",
    "text",
]

# Field values a JSON-encoding writer uses for "no value".
_ABSENT = frozenset({"", "null", "none", "nil"})
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})
_MAX_FIELD_CHARS = 4096


class RejectCode(enum.StrEnum):
    """Why a message was dead-lettered (a bounded label)."""

    MALFORMED = "malformed"  # not decodable, a field missing, of the wrong type or range
    INCONSISTENT = "inconsistent"  # fields that contradict each other
    UNKNOWN_REGIME = "unknown_regime"
    UNKNOWN_ACTION = "unknown_action"
    UNKNOWN_SYMBOL = "unknown_symbol"
    STALE = "stale"  # older (or further ahead) than streams.max_signal_age_ms
    ENGINE = "engine"  # the sizing engine refused the batch it was in


class MessageRejected(Exception):
    """A message that cannot become a signal: ``field``, ``value``, what was ``expected``."""

    def __init__(self, code: RejectCode, field: str, value: object, expected: str) -> None:
        self.code = code
        self.field = field
        self.value = value
        self.expected = expected
        super().__init__(f"{field} was {_show(value)}, expected {expected}")


def _show(value: object) -> str:
    text_ = repr(value)
    return text_ if len(text_) <= 200 else text_[:200] + "..."


def _str(raw: object, field: str) -> str:
    if isinstance(raw, bytes):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MessageRejected(RejectCode.MALFORMED, field, raw, "UTF-8 text") from None
    if isinstance(raw, str):
        return raw
    raise MessageRejected(RejectCode.MALFORMED, field, raw, "a string")


def decode_entry(fields: Mapping[Any, Any]) -> dict[str, Any]:
    """A stream entry's fields as a message: its ``data`` JSON object, or the fields as
    strings. Field names and values must be UTF-8; ``data`` must hold a JSON object."""
    out = {_str(k, "field name"): v for k, v in fields.items()}
    if set(out) == {"data"}:
        raw = _str(out["data"], "data")
        try:
            msg = json.loads(raw, parse_constant=_no_constant)
        except ValueError as err:
            raise MessageRejected(RejectCode.MALFORMED, "data", raw,
                                  f"a JSON object ({err})") from None
        if not isinstance(msg, dict):
            raise MessageRejected(RejectCode.MALFORMED, "data", raw, "a JSON object")
        return msg
    return {k: _str(v, k) for k, v in out.items()}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _present(msg: Mapping[str, Any], name: str, required: bool = False) -> Any:
    """The raw value of ``name``, or None when absent (or written as null); a required
    field that is absent is refused."""
    value = msg.get(name)
    if isinstance(value, str) and value.strip().lower() in _ABSENT:
        value = None
    if value is None and required:
        raise MessageRejected(RejectCode.MALFORMED, name, None, "a value (it is missing)")
    return value


def _scalar(msg: Mapping[str, Any], name: str, required: bool, expected: str,
            max_chars: int) -> Any:
    """A field's raw value for a numeric read (None: absent); booleans and overlong text
    are refused before any conversion."""
    value = _present(msg, name, required)
    if isinstance(value, bool) or (isinstance(value, str) and len(value) > max_chars):
        raise MessageRejected(RejectCode.MALFORMED, name, value, expected)
    return value


def text(msg: Mapping[str, Any], name: str, *, required: bool = False,
         max_len: int = 64) -> str | None:
    """A printable, non-blank string of at most ``max_len`` characters."""
    value = _present(msg, name, required)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MessageRejected(RejectCode.MALFORMED, name, value, "a string")
    value = value.strip()
    if not value or len(value) > max_len or not value.isprintable():
        raise MessageRejected(RejectCode.MALFORMED, name, value,
                              f"printable text of 1..{max_len} characters")
    return value


def number(msg: Mapping[str, Any], name: str, lo: float, hi: float, *,
           required: bool = False) -> float | None:
    """A finite number with ``lo <= value <= hi`` (a JSON number or its text)."""
    expected = f"a finite number with {lo:g} <= {name} <= {hi:g}"
    value = _scalar(msg, name, required, expected, _MAX_FIELD_CHARS)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise MessageRejected(RejectCode.MALFORMED, name, value, expected) from None
    if not isinstance(value, (int, float)):
        raise MessageRejected(RejectCode.MALFORMED, name, value, expected)
    x = float(value)
    if not math.isfinite(x) or not lo <= x <= hi:
        raise MessageRejected(RejectCode.MALFORMED, name, value, expected)
    return x


def integer(msg: Mapping[str, Any], name: str, lo: int, hi: int, *,
            required: bool = False) -> int | None:
    """A whole number with ``lo <= value <= hi`` (``3``, ``"3"``, ``3.0`` all read 3)."""
    expected = f"a whole number with {lo} <= {name} <= {hi}"
    value = _scalar(msg, name, required, expected, 32)
    if value is None:
        return None
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        s = value.strip()
        try:
            n = int(s)
        except ValueError:
            n = _whole(s, name, expected)
    elif isinstance(value, float):
        n = _whole(value, name, expected)
    else:
        raise MessageRejected(RejectCode.MALFORMED, name, value, expected)
    if not lo <= n <= hi:
        raise MessageRejected(RejectCode.MALFORMED, name, value, expected)
    return n


def _whole(value: str | float, name: str, expected: str) -> int:
    try:
        x = float(value)
    except ValueError:
        raise MessageRejected(RejectCode.MALFORMED, name, value, expected) from None
    if not math.isfinite(x) or x != math.floor(x):
        raise MessageRejected(RejectCode.MALFORMED, name, value, expected)
    return int(x)


def flag(msg: Mapping[str, Any], name: str) -> bool | None:
    """A boolean: JSON true/false, or ``true``/``false``/``1``/``0``/``yes``/``no``."""
    value = _present(msg, name)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        key = value.strip().lower()
        if key in _TRUE:
            return True
        if key in _FALSE:
            return False
    raise MessageRejected(RejectCode.MALFORMED, name, value, "true or false")
