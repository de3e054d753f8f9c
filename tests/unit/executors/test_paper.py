"""Unit tests of the paper executor: intents in, fills out at each observation; cancel,
working orders, replay of recorded fills, export/restore."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from himari_l3.config.schema import FillModelConfig
from himari_l3.executor_port import Executor, order_of
from himari_l3.executors import PaperExecutor
from himari_l3.fills import OrderSide, TimeInForce

T0 = 1_700_000_000 * 10**9


@dataclass(frozen=True)
class Intent:
    """The fields of an order intent an executor reads."""

    client_order_id: str
    symbol: str
    side: str
    quantity: float
    limit_price: float | None = None
    reduce_only: bool = False
    time_in_force: str = "GTC"
    created_ns: int = T0
    expires_at_ns: int = T0 + 300 * 10**9


def test_order_of_maps_every_field() -> None:
    """An intent becomes the order the simulator works (rest quantity if given)."""
    o = order_of(Intent("c1", "BTC", "sell", 2.0, 99.0, True, "IOC"), quantity=0.5)
    assert (o.client_order_id, o.symbol, o.side, o.quantity, o.limit_price) == (
        "c1", "BTC", OrderSide.SELL, 0.5, 99.0)
    assert (o.reduce_only, o.time_in_force, o.submitted_ns, o.expires_ns) == (
        True, TimeInForce.IOC, T0, T0 + 300 * 10**9)


def test_fills_its_own_intents_at_the_observed_prices() -> None:
    """Two intents, one observation: both filled at their symbol's price plus slippage."""
    px: Executor = PaperExecutor(FillModelConfig(impact_bps=0.0))
    px.submit([Intent("a", "BTC", "buy", 0.1), Intent("b", "ETH", "sell", 2.0)])
    assert sorted(px.working()) == ["a", "b"]
    fills, cancelled = px.observe({"ETH": 3000.0, "BTC": 50_000.0}, T0)
    assert cancelled == [] and px.working() == []
    assert [(f.symbol, f.quantity) for f in fills] == [("BTC", 0.1), ("ETH", 2.0)]
    assert fills[0].price == pytest.approx(50_010.0) and fills[1].price == pytest.approx(2999.4)


def test_cancel_drops_working_orders() -> None:
    """A superseded intent is cancelled and no longer fills."""
    px = PaperExecutor(FillModelConfig(latency_bars=1))
    px.submit([Intent("a", "BTC", "buy", 0.1)])
    px.cancel(["a", "unknown"])
    assert px.working() == [] and px.observe({"BTC": 1.0}, T0 + 1).fills == []


def test_volumes_bound_participation() -> None:
    """With a volume, at most max_participation of it fills per observation."""
    px = PaperExecutor(FillModelConfig(max_participation=0.1))
    px.submit([Intent("a", "BTC", "buy", 1.0)])
    (f,), _ = px.observe({"BTC": 100.0}, T0, volumes={"BTC": 4.0})
    assert f.quantity == pytest.approx(0.4) and px.working() == ["a"]


def test_replay_applies_recorded_fills_and_restores_exactly() -> None:
    """A replay with the recorded fills reproduces them under any model; export/restore
    round-trips the working orders."""
    live = PaperExecutor(FillModelConfig(slippage_noise_bps=3.0, seed=9))
    again = PaperExecutor(FillModelConfig(fee_bps=99.0))
    for px in (live, again):
        px.submit([Intent("a", "BTC", "buy", 1.0), Intent("b", "SOL", "buy", 5.0)])
    got = live.observe({"BTC": 100.0, "SOL": 10.0}, T0, volumes={"BTC": 5.0, "SOL": 1e6})
    assert again.observe({"BTC": 100.0, "SOL": 10.0}, T0, volumes={"BTC": 5.0, "SOL": 1e6},
                         recorded=got.fills) == got
    twin = PaperExecutor()
    twin.restore_state(live.export_state())
    assert twin.export_state() == live.export_state() == again.export_state()
    assert twin.working() == ["a"]
