"""Errors of the service layer (the HTTP transport maps them to status codes)."""

from __future__ import annotations

__all__ = ["PersistenceUnavailable"]


class PersistenceUnavailable(Exception):
    """The store could not commit: the request was not acknowledged (HTTP 503)."""
