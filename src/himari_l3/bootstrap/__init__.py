"""The composition root: the one place that wires ports to adapters.

Everything that chooses an implementation lives here, and only here:

* what ``enable_metrics=True`` means (the Prometheus observer on the process-wide registry)
  and how ``enable_rl=True`` builds its model client (mock or HTTP, from the config) —
  installed into the core's ports when the package is imported (`install_defaults`), so the
  user's documented calls keep working while no core module imports an adapter;
* `build_observer`, `build_rl_client`, `build_portfolio`, `build_hybrid`: the engines and
  their adapters from a `Layer3Config`;
* `build_service`: the service (engine + store + observer + reloader) that the HTTP app, and
  any other transport, drives;
* `build_portfolio`: the Phase 2 engine (the backtest's Phase 2 policy is built on it);
* `build_desk`: the execution desk with the paper executor when ``execution.paper`` is on
  (the service and the live loop fill their own intents), `paper_executor` for the backtest.

A new model transport is one adapter module and one branch in `build_rl_client`; a new input
transport builds its service with `build_service` and drives it (see ARCHITECTURE.md).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .._clock import SYSTEM_CLOCK, Clock
from ..book import Layer3Book, Markets
from ..book.desk import ExecutionDesk
from ..config.schema import FillModelConfig, Layer3Config
from ..executors import PaperExecutor
from ..observability.metrics import Layer3Metrics
from ..observability.prometheus import PrometheusObserver, default_observer
from ..observers import NULL_OBSERVER, Observer, install_metrics_factory
from ..phase2 import Layer3Phase2Portfolio
from ..phase3 import Layer3Phase3Hybrid
from ..resilience import CircuitBreaker
from ..rl.client import TransformerRLClient
from ..rl.mock import MockTransformerRLClient
from ..rl_guard import GuardedModel, install_client_factory

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "build_desk",
    "build_hybrid",
    "build_observer",
    "build_portfolio",
    "build_rl_client",
    "install_defaults",
    "paper_executor",
]

log = logging.getLogger(__name__)


def build_observer(config: Layer3Config, registry: CollectorRegistry | None = None) -> Observer:
    """The observer a service or backtest uses: Prometheus on ``registry`` (its own fresh
    registry when None) if ``metrics.enabled``, else the no-op observer."""
    if not config.metrics.enabled:
        return NULL_OBSERVER
    return PrometheusObserver(Layer3Metrics(registry, config.metrics.max_label_values))


def paper_executor(fills: FillModelConfig, markets: Markets) -> PaperExecutor:
    """The paper executor with ``fills``, partial fills rounded to the markets' grid."""
    def round_down(symbol: str, quantity: float) -> float:
        rules = markets.rules(symbol)
        return quantity if rules is None else rules.floor_quantity(quantity)
    return PaperExecutor(fills, round_down=round_down)


def build_desk(config: Layer3Config, book: Layer3Book,
               markets: Markets) -> ExecutionDesk | None:
    """The book's execution desk if the service fills its own intents
    (``execution.paper``), else None (Layer 4 executes them)."""
    if not config.execution.paper:
        return None
    return ExecutionDesk(book.book, paper_executor(config.execution.fill_model, markets),
                         apply_fills=book.apply_fills)


def build_rl_client(config: Layer3Config, breaker: CircuitBreaker,
                    clock: Clock) -> GuardedModel:
    """The guarded model client ``config.rl`` asks for: the seeded mock (``use_mock``, or no
    endpoint configured) or the HTTP client of ``rl.endpoint``."""
    rl = config.rl
    if rl.use_mock or not rl.endpoint:
        if not rl.use_mock:
            log.warning("RL enabled without an endpoint: using the mock RL client")
        return MockTransformerRLClient(rl.mock_success_rate, rl.mock_seed,
                                       circuit_breaker=breaker,
                                       min_confidence=rl.min_confidence, clock=clock,
                                       timeout_sec=rl.timeout_sec)
    return TransformerRLClient(rl.endpoint, rl.timeout_sec, rl.min_confidence,
                               circuit_breaker=breaker, clock=clock,
                               max_response_bytes=rl.max_response_bytes,
                               warmup_timeout_sec=rl.warmup_timeout_sec)


def build_portfolio(config: Layer3Config, *, observer: Observer = NULL_OBSERVER,
                    clock: Clock = SYSTEM_CLOCK) -> Layer3Phase2Portfolio:
    """The Phase 2 engine for ``config`` (its limits and sizing)."""
    return Layer3Phase2Portfolio(config.portfolio_value, enable_metrics=False,
                                 config=config.portfolio, sizing_config=config.sizing,
                                 observer=observer, clock=clock)


def build_hybrid(config: Layer3Config, *, observer: Observer = NULL_OBSERVER,
                 clock: Clock = SYSTEM_CLOCK, rl_client: GuardedModel | None = None,
                 performance_periods_per_year: float = 8760.0) -> Layer3Phase3Hybrid:
    """The Phase 3 engine for ``config`` (its RL client from the config unless given)."""
    return Layer3Phase3Hybrid(config=config, enable_metrics=False, observer=observer,
                              clock=clock, rl_client=rl_client,
                              performance_periods_per_year=performance_periods_per_year)


def install_defaults() -> None:
    """Wire the core's ports to the default adapters (run once, at package import)."""
    install_metrics_factory(default_observer)
    install_client_factory(build_rl_client)


install_defaults()
