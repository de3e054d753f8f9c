"""The Prometheus writes of the trading states and the paper executor (mixed into
`PrometheusObserver`): a state change sets the portfolio's gauge and the restricted-symbol
counts and, when it is a transition, counts it; a paper fill counts itself, its fee and its
slippage; an executor's cancellations count as closed intents (``status="cancelled"``)."""

from __future__ import annotations

from typing import Any

from ..events import IntentsCancelled, PaperFilled
from ..trading import TradingState, TradingStateChanged
from .metrics import Layer3Metrics

__all__ = ["LabelledChildren", "TradingWriters"]

_RESTRICTED = (TradingState.REDUCING, TradingState.HALTED)


class LabelledChildren:
    """The labelled children of metric families, cached: ``labels()`` takes a lock and
    hashes, too slow for the writers' hot path."""

    _children: dict[tuple[Any, ...], Any]

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child


class TradingWriters(LabelledChildren):
    """Writers for `TradingStateChanged`, `PaperFilled` and `IntentsCancelled`."""

    metrics: Layer3Metrics
    # (portfolio label, symbol) -> its own state, for the symbols not ACTIVE (bounded by
    # the restricted symbols: an ACTIVE one is dropped).
    _restricted: dict[tuple[str, str], TradingState]

    def _write_trading_state(self, event: TradingStateChanged) -> None:
        m = self.metrics
        name = m.portfolio_label(event.portfolio)
        if event.is_transition:
            scope = "portfolio" if event.symbol is None else "symbol"
            self._child(m.trading_transitions, scope, event.new.value,
                        event.reason.value).inc()
        if event.symbol is None:
            self._child(m.trading_state, name).set(event.new.code)
            return
        key = (name, event.symbol)
        if event.new is TradingState.ACTIVE:
            self._restricted.pop(key, None)
        else:
            self._restricted[key] = event.new
        for state in _RESTRICTED:
            count = sum(1 for (p, _), st in self._restricted.items()
                        if p == name and st is state)
            self._child(m.trading_symbols, name, state.value).set(count)

    def _write_paper_fill(self, event: PaperFilled) -> None:
        m = self.metrics
        self._child(m.paper_fills, event.side, "partial" if event.partial else "full").inc()
        m.paper_fees.inc(event.fee_usd)
        m.paper_slippage.observe(event.slippage_bps)

    def _write_cancelled(self, event: IntentsCancelled) -> None:
        self._child(self.metrics.book_intents_closed, "cancelled").inc(event.intents)
