"""Exception tree of Layer 3.

    Layer3Error
    ├── ValidationError (also a ValueError)
    │   ├── InvalidSignalException
    │   ├── InvalidCascadeIndicatorsException
    │   ├── InvalidPriceException
    │   ├── InvalidOutcomeException
    │   ├── InvalidRLPredictionException
    │   └── InvalidBookRequestException (a fill or a positions snapshot)
    ├── ConfigError (also a ValueError)
    ├── StateRestoreError
    └── CircuitBreakerOpenException

Every validation error names the field, the value it had and what was allowed, so that a
caller (or an HTTP client reading a 422) can fix the input without reading our code.
"""

from __future__ import annotations


class Layer3Error(Exception):
    """Base of every error Layer 3 raises on purpose."""


class ValidationError(Layer3Error, ValueError):
    """An input value was missing, non-finite or out of its allowed range."""

    def __init__(self, field: str, value: object, expected: str, *,
                 path: tuple[str | int, ...] | None = None) -> None:
        self.field = field
        self.value = value
        self.expected = expected
        # Where the field sits in a nested request (("fills", 2, "quantity")); None: the
        # field name says it.
        self.path = path
        super().__init__(f"{field} was {value!r}, expected {expected}")


class InvalidSignalException(ValidationError):
    """A `TacticalSignal` field is invalid."""


class InvalidCascadeIndicatorsException(ValidationError):
    """A `CascadeIndicators` field is invalid."""


class InvalidPriceException(ValidationError):
    """A price given for sizing is missing, non-finite or not positive."""


class InvalidOutcomeException(ValidationError):
    """A realised trade outcome is invalid."""


class InvalidRLPredictionException(ValidationError):
    """An RL model answer is malformed or out of range (counts as an RL failure)."""


class InvalidBookRequestException(ValidationError):
    """A fill or a positions snapshot is invalid, or does not fit the book (an unknown
    order, the wrong side, more than the order's quantity); ``path`` locates the field."""


class ConfigError(Layer3Error, ValueError):
    """A configuration file or value is invalid; the message names the key path.

    ``errors`` holds every problem found (one message each, key path first); the message is
    them joined by newlines, so a single problem reads as before.
    """

    def __init__(self, message: str, errors: tuple[str, ...] | None = None) -> None:
        self.errors: tuple[str, ...] = errors if errors else (message,)
        super().__init__(message)


class StateRestoreError(Layer3Error):
    """Exported learned state could not be restored (wrong version or shape)."""


class CircuitBreakerOpenException(Layer3Error):
    """The circuit breaker is open: the call was rejected without being attempted."""

    def __init__(self, name: str, retry_in_sec: float) -> None:
        self.name = name
        self.retry_in_sec = retry_in_sec
        super().__init__(f"circuit breaker {name!r} is open; next probe in {retry_in_sec:.3f}s")
