"""The paper executor: the service fills its own intents with the fill model the backtest
uses (``fills/``), so a paper deployment needs no Layer 4.

Intents become simulated orders (`executor_port.order_of`); every price observation the
service receives works them (latency, partial fills, slippage, fees: ``fills/model.py``).
Deterministic: the same intents and observations give the same fills (the noise is derived
from the seed and the order id), and a replay applies the journaled fills instead of
simulating (``recorded``), so even a changed fill model cannot rewrite acknowledged history.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..config.schema import FillModelConfig
from ..executor_port import IntentLike, order_of
from ..fills import FillModel, FillSimulator, Quote, SimFill, Worked

__all__ = ["PaperExecutor"]


class PaperExecutor:
    """Fills the service's own intents (module docstring). ``round_down(symbol, qty)``:
    the venue's quantity grid (the markets file's ``floor_quantity``)."""

    name = "paper"

    def __init__(self, config: FillModelConfig | None = None, *,
                 round_down: Callable[[str, float], float] | None = None) -> None:
        self.simulator = FillSimulator(FillModel(config), round_down=round_down)

    def reconfigure(self, config: FillModelConfig) -> None:
        """A new fill model (hot reload); working orders are kept."""
        self.simulator.model = FillModel(config)

    def submit(self, intents: Sequence[IntentLike]) -> None:
        for intent in intents:
            self.simulator.submit(order_of(intent))

    def cancel(self, client_order_ids: Sequence[str]) -> None:
        for coid in client_order_ids:
            self.simulator.cancel(coid)

    def working(self) -> list[str]:
        if not len(self.simulator):
            return []
        return [o.client_order_id for o, _ in self.simulator.open_orders()]

    def observe(self, prices: Mapping[str, float], timestamp_ns: int, *,
                volumes: Mapping[str, float] | None = None,
                recorded: Sequence[SimFill] | None = None) -> Worked:
        """Work every symbol's orders against its price (symbols in sorted order)."""
        if not len(self.simulator):
            return Worked([], [])  # nothing working: nothing to do (most observations)
        fills: list[SimFill] = []
        cancelled = []
        tape: dict[str, dict[str, SimFill]] | None = None
        if recorded is not None:
            tape = {}
            for f in recorded:
                tape.setdefault(f.symbol, {})[f.client_order_id] = f
        for sym in sorted(prices):
            quote = Quote(sym, prices[sym], timestamp_ns,
                          None if volumes is None else volumes.get(sym))
            worked = self.simulator.on_quote(
                quote, None if tape is None else tape.get(sym, {}))
            fills += worked.fills
            cancelled += worked.cancelled
        return Worked(fills, cancelled)

    def export_state(self) -> dict[str, Any]:
        return self.simulator.export_state()

    def restore_state(self, state: dict[str, Any]) -> None:
        self.simulator.restore_state(state)
