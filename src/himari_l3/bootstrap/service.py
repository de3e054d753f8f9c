"""The composition root's service half: engine + store + observers + reloader, from a config.

Any transport in front of the service (the HTTP app today; a stream consumer next) calls
`build_service` and drives what it returns: ``start()``, the request methods, ``stop()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._clock import SYSTEM_CLOCK, Clock
from ..book import Layer3Book
from ..config.loader import config_version
from ..config.markets import load_markets
from ..config.reload import ConfigReloader
from ..config.schema import Layer3Config
from ..observers import GatedObserver
from ..persistence import Store
from ..runtime.clock import PinnedClock
from ..runtime.service import SizingService
from . import build_desk, build_hybrid, build_observer

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["build_service"]


def build_service(config: Layer3Config, *, config_path: str | None = None,
                  registry: CollectorRegistry | None = None, store: Store | None = None,
                  clock: Clock | None = None) -> SizingService:
    """Wire the service for ``config`` (the engine, its book with the instrument rules of
    ``execution.markets_file``, the paper executor if ``execution.paper``, the store, the
    observers, the reloader).

    ``registry``: where metrics go (a fresh one if None; ignored when metrics are off).
    ``store``: an open store to use (not closed by the service); by default the service
    opens ``persistence.url`` and closes it at ``stop()``. ``config_path``: watched and
    hot-reloaded while the service runs. ``clock``: the wall and monotonic clock (tests
    inject a manual one).
    """
    observer = build_observer(config, registry)
    pinned = PinnedClock(clock or SYSTEM_CLOCK)
    gate = GatedObserver(observer)  # muted while the journal is replayed
    markets = load_markets(config.execution)  # a bad file refuses to start (ConfigError)
    hybrid = build_hybrid(config, observer=gate, clock=pinned)
    book = Layer3Book(hybrid, config=config, markets=markets, observer=gate, clock=pinned)
    owns_store = store is None
    the_store = store if store is not None else Store(
        config.persistence.url, sqlite_synchronous=config.persistence.sqlite_synchronous)
    svc = SizingService(config, hybrid, the_store, gate, pinned, config_version,
                        owns_store=owns_store, book=book,
                        desk=build_desk(config, book, markets))
    if config_path is not None:
        svc.reloader = ConfigReloader(config_path, svc.apply_config_threadsafe, config,
                                      config.service.config_watch_interval_sec, observer)
    return svc
