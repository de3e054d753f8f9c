"""``himari-l3 run``: wait for the portfolio's lease, then run the live loop until stopped.

A process starts as a standby: it polls the lease (``persistence/lease.py``) and owns the
portfolio once the lease is free, released, or its owner has been silent for a TTL. Then it
opens the store with the lease's fence, builds the service through the composition root
(``bootstrap.service.build_service``), restores learned state from the journal, and runs the
loop (``loop.py``) while a task renews the lease. ``stop`` (SIGTERM/SIGINT in the command)
finishes the tick in progress, writes the final snapshot and releases the lease, so a
standby takes over at once. A lost lease ends the run with ``LeaseLost`` (exit status 3): a
supervisor restarts the process, which comes back as a standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from .._clock import SYSTEM_CLOCK, Clock
from ..bootstrap.service import build_service
from ..config.schema import Layer3Config
from ..events import LeaseChanged
from ..observers import Observer
from ..persistence import Store
from ..persistence.lease import Lease
from ..runtime.service import SizingService
from .loop import LiveLoop

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["REDIS_PASSWORD_ENV", "consumer_name", "open_redis", "run_live"]

log = logging.getLogger(__name__)

REDIS_PASSWORD_ENV = "HIMARI_L3_REDIS_PASSWORD"


def consumer_name(config: Layer3Config) -> str:
    """``streams.consumer_name``, or ``<hostname>-<pid>``."""
    return config.streams.consumer_name or f"{socket.gethostname()}-{os.getpid()}"


def open_redis(config: Layer3Config) -> Redis:
    """The loop's Redis client for ``streams.redis_url`` (password from the environment)."""
    password = os.environ.get(REDIS_PASSWORD_ENV) or None
    return Redis.from_url(config.streams.redis_url, password=password,
                          socket_connect_timeout=5.0, socket_timeout=30.0,
                          health_check_interval=30)


async def run_live(config: Layer3Config, stop: asyncio.Event, *,
                   config_path: str | None = None, registry: CollectorRegistry | None = None,
                   clock: Clock = SYSTEM_CLOCK,
                   on_ready: Callable[[LiveLoop], None] | None = None) -> None:
    """Run the live loop for ``config`` until ``stop`` is set (see the module docstring).
    ``on_ready`` is called once the loop owns the portfolio and is about to tick."""
    cfg = config.streams
    owner = consumer_name(config)
    lease = Lease(config.persistence.url, cfg.portfolio, owner, cfg.lease_ttl_ms / 1000.0,
                  clock)
    try:
        if not await _wait_for_lease(lease, stop):
            return
        store = Store(config.persistence.url,
                      sqlite_synchronous=config.persistence.sqlite_synchronous)
        store.fence = lease.fence
        svc = build_service(config, config_path=config_path, registry=registry, store=store,
                            clock=clock)
        observer = svc.observer
        observer.emit(LeaseChanged("acquired", lease.epoch or 0))
        redis = open_redis(config)
        try:
            await svc.start()
            loop = LiveLoop(svc, redis, clock=clock, consumer_name=owner, lease=lease)
            renewer = asyncio.create_task(_keep_lease(lease, observer, stop))
            if on_ready is not None:
                on_ready(loop)
            try:
                await loop.run(stop)
            finally:
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer
        finally:
            await _shut_down(svc, redis, lease, observer)
            store.close()
    finally:
        lease.close()


async def _wait_for_lease(lease: Lease, stop: asyncio.Event) -> bool:
    """Poll as a standby until this process owns the portfolio (True) or ``stop`` (False)."""
    period = max(0.05, lease.ttl_sec / 4.0)
    waiting_logged = False
    while not stop.is_set():
        try:
            if await asyncio.to_thread(lease.try_acquire):
                return True
        except Exception:
            log.exception("reading the lease failed (retrying)")
        if not waiting_logged:
            log.info("standby: portfolio %r is owned by another process", lease.portfolio)
            waiting_logged = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), period)
    return False


async def _keep_lease(lease: Lease, observer: Observer, stop: asyncio.Event) -> None:
    """Renew every third of the TTL; a lost lease is reported (the loop stops on it)."""
    period = lease.ttl_sec / 3.0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), period)
        try:
            if not await asyncio.to_thread(lease.renew):
                observer.emit(LeaseChanged("lost", 0))
                log.error("lease of portfolio %r lost to another process", lease.portfolio)
                return
        except Exception:
            log.exception("renewing the lease failed (retrying; lost after a TTL)")


async def _shut_down(svc: SizingService, redis: Redis, lease: Lease,
                     observer: Observer) -> None:
    epoch = lease.epoch
    try:
        await svc.stop()
    finally:
        await redis.aclose()
        if epoch is not None and lease.epoch is not None:
            await asyncio.to_thread(lease.release)
            observer.emit(LeaseChanged("released", epoch))
