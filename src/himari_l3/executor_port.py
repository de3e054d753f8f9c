"""The executor port: where the service's order intents go to be executed.

An executor takes the intents the book issues (`submit`), drops the ones the book no longer
wants (`cancel`), and is shown every price observation the service receives (`observe`). One
that executes by itself — the paper executor (``executors/paper.py``), sharing its fill model
with the backtest — answers an observation with the fills it made; the service applies them
to the book exactly as fills posted by Layer 4. An executor that hands intents to a venue
(Layer 4 over Redis) answers with none: its fills come back later through the fills path.

`observe` takes ``recorded`` fills on replay: the executor applies what it did the first time
instead of doing it again (the service journals every fill it applied), the way the RL
guard serves recorded answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .fills import OrderSide, SimFill, SimOrder, TimeInForce, Worked

__all__ = ["Executor", "IntentLike", "order_of"]


class IntentLike(Protocol):
    """What an executor reads of an order intent (the book's ``OrderIntent``)."""

    @property
    def client_order_id(self) -> str: ...
    @property
    def symbol(self) -> str: ...
    @property
    def side(self) -> str: ...
    @property
    def quantity(self) -> float: ...
    @property
    def limit_price(self) -> float | None: ...
    @property
    def reduce_only(self) -> bool: ...
    @property
    def time_in_force(self) -> str: ...
    @property
    def created_ns(self) -> int: ...
    @property
    def expires_at_ns(self) -> int: ...


def order_of(intent: IntentLike, quantity: float | None = None) -> SimOrder:
    """The order a simulated executor works for ``intent`` (``quantity``: what is left of
    it, default all of it)."""
    return SimOrder(intent.client_order_id, intent.symbol, OrderSide(intent.side),
                    float(intent.quantity if quantity is None else quantity),
                    int(intent.created_ns), intent.limit_price, bool(intent.reduce_only),
                    TimeInForce(intent.time_in_force), int(intent.expires_at_ns))


class Executor(Protocol):
    """What the service calls to have its own intents executed (module docstring)."""

    name: str

    def submit(self, intents: Sequence[IntentLike]) -> None:
        """Start executing newly issued intents."""
        ...

    def cancel(self, client_order_ids: Sequence[str]) -> None:
        """Stop executing these (superseded, expired); unknown ids are ignored."""
        ...

    def working(self) -> list[str]:
        """The client order ids still being executed."""
        ...

    def observe(self, prices: Mapping[str, float], timestamp_ns: int, *,
                volumes: Mapping[str, float] | None = None,
                recorded: Sequence[SimFill] | None = None) -> Worked:
        """A price observation (per symbol, stamped ``timestamp_ns``): the fills it made
        (none for a venue executor) and the orders it cancelled."""
        ...

    def export_state(self) -> dict[str, Any]:
        ...

    def restore_state(self, state: dict[str, Any]) -> None:
        ...
