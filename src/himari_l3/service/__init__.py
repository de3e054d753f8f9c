"""The HTTP service (FastAPI): sizing, allocation, learning, state, metrics, health."""

from typing import Any

from .app import create_app

__all__ = ["create_app", "run_service", "serve_main"]


def __getattr__(name: str) -> Any:
    # Lazy, so that ``python -m himari_l3.service.main`` does not import main twice.
    if name in ("run_service", "serve_main"):
        from . import main

        return getattr(main, name)
    raise AttributeError(name)
