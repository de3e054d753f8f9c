"""``himari-l3 run --config FILE [--paper]``: the live loop as a command.

Loads and validates the config (hot-reloaded while running: the live ``streams`` keys are
read at each tick), serves ``/metrics`` on ``service.host:service.port`` when metrics are on,
and runs `run.run_live` until SIGTERM or SIGINT, which finish the tick in progress, write the
final snapshot and release the lease. Exit status: 0 after a graceful stop, 2 for a config
or usage error, 3 when the portfolio's lease was lost to another process.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, start_http_server

from .._exceptions import ConfigError
from ..config.loader import PAPER_ENV, load_config
from ..config.schema import Layer3Config
from ..persistence.lease import LeaseLost
from ..runtime.heap import settle_heap
from .run import run_live

__all__ = ["paper_executor", "run_main"]

log = logging.getLogger(__name__)


def paper_executor() -> None:
    """``--paper``: the loop fills its own intents with the paper executor. Sets
    ``HIMARI_L3_PAPER`` for this process, so the config file (and every hot reload of it)
    has ``execution.paper: true``; the service the loop drives then works each tick's prices
    through the execution desk (``book/desk.py``)."""
    os.environ[PAPER_ENV] = "1"


def run_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``himari-l3 run``; returns the exit code."""
    p = argparse.ArgumentParser(prog="himari-l3 run",
                                description="Run the live loop: Layer 2's Redis stream in, "
                                            "decisions and intents out (docs/integration.md).")
    p.add_argument("--config", required=True, help="YAML config file (hot reloaded)")
    p.add_argument("--paper", action="store_true",
                   help="fill the loop's own intents with the paper executor")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.INFO)  # `himari-l3` configured WARNING already
    if args.paper:
        paper_executor()
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"ERROR {err}", file=sys.stderr)
        return 2
    registry = CollectorRegistry()
    if config.metrics.enabled:
        start_http_server(config.service.port, config.service.host, registry)
    try:
        asyncio.run(_main(config, args.config, registry))
    except LeaseLost as err:
        log.error("%s: stopping (a supervisor restarts this process as a standby)", err)
        return 3
    return 0


async def _main(config: Layer3Config, path: str, registry: CollectorRegistry) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_live(config, stop, config_path=path, registry=registry, on_ready=_freeze_gc)


def _freeze_gc(_: object) -> None:
    """Once the loop owns its portfolio: the long-running process's collector settings
    (``runtime/heap.py``, as the HTTP service does)."""
    settle_heap()
