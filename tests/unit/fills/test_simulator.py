"""Unit tests of the fill simulator: latency in bars and seconds, partial fills under the
participation cap, lot steps, time in force, limits, idempotent submission, export/restore."""

from __future__ import annotations

import math
from typing import Any

import pytest

from himari_l3._exceptions import StateRestoreError, ValidationError
from himari_l3.config.schema import FillModelConfig
from himari_l3.fills import (
    FillModel,
    FillSimulator,
    OrderSide,
    Quote,
    SimFill,
    SimOrder,
    TimeInForce,
)

T0 = 1_700_000_000 * 10**9
SEC = 10**9


def floor_to(step: float) -> Any:
    """A venue grid of ``step`` (0: any quantity), rounding toward zero."""
    return lambda _, qty: math.floor(qty / step + 1e-9) * step if step else qty


def sim(step: float = 0.0, **cfg: Any) -> FillSimulator:
    """A simulator with config overrides (no impact, so prices are easy to check)."""
    cfg.setdefault("impact_bps", 0.0)
    return FillSimulator(FillModel(FillModelConfig(**cfg)), round_down=floor_to(step))


def order(coid: str = "o1", qty: float = 10.0, side: str = "buy", **kw: Any) -> SimOrder:
    """A market GTC order on BTC submitted at T0."""
    return SimOrder(coid, kw.pop("symbol", "BTC"), OrderSide(side), qty,
                    kw.pop("submitted_ns", T0), **kw)


def q(price: float = 100.0, at: int = T0, volume: float | None = None,
      symbol: str = "BTC") -> Quote:
    """An observation."""
    return Quote(symbol, price, at, volume)


def test_immediate_fill_at_the_decision_observation() -> None:
    """Latency 0: filled in full at the observation it was decided on, slippage and fee."""
    s = sim()
    s.submit(order())
    (f,), cancelled = s.on_quote(q())
    assert cancelled == [] and len(s) == 0
    assert (f.quantity, f.done, f.remaining, f.reference_price) == (10.0, True, 0.0, 100.0)
    assert f.price == pytest.approx(100.02) and f.slippage_bps == 2.0
    assert f.fee == pytest.approx(10 * 100.02 * 5e-4)
    assert f.signed_quantity == 10.0 and f.notional == pytest.approx(1000.2)


def test_sell_fills_below_the_reference() -> None:
    """A sell receives the reference less slippage."""
    s = sim()
    s.submit(order(side="sell"))
    (f,), _ = s.on_quote(q())
    assert f.price == pytest.approx(99.98) and f.signed_quantity == -10.0


def test_latency_in_bars_waits_for_later_observations() -> None:
    """latency_bars 2: the decision bar and the next pass, the third fills."""
    s = sim(latency_bars=2)
    s.submit(order())
    assert s.on_quote(q(at=T0)).fills == []
    assert s.on_quote(q(101.0, at=T0 + 3600 * SEC)).fills == []
    (f,), _ = s.on_quote(q(102.0, at=T0 + 7200 * SEC))
    assert f.reference_price == 102.0


def test_latency_in_seconds_on_the_observation_clock() -> None:
    """latency_sec 0.5: an observation 0.4 s later does not fill, 0.5 s later does."""
    s = sim(latency_sec=0.5)
    s.submit(order())
    assert s.on_quote(q(at=T0 + 400_000_000)).fills == []
    assert len(s.on_quote(q(at=T0 + 500_000_000)).fills) == 1


def test_observations_before_submission_are_ignored() -> None:
    """A late-arriving older observation neither fills nor counts toward latency."""
    s = sim(latency_bars=1)
    s.submit(order())
    assert s.on_quote(q(at=T0 - SEC)).fills == []
    assert s.on_quote(q(at=T0)).fills == []  # counts as the first
    assert len(s.on_quote(q(at=T0 + SEC)).fills) == 1


def test_partial_fills_under_the_participation_cap() -> None:
    """10 % of 40 units per observation: 4 + 4 + 2, the last one done."""
    s = sim()
    s.submit(order(qty=10.0))
    sizes = []
    for i in range(3):
        (f,), _ = s.on_quote(q(at=T0 + i * SEC, volume=40.0))
        sizes.append((f.quantity, f.remaining, f.done))
    assert sizes == [(4.0, 6.0, False), (4.0, 2.0, False), (2.0, 0.0, True)]
    assert len(s) == 0


def test_orders_share_one_observation_capacity_in_submission_order() -> None:
    """Two orders, capacity 5: the first takes 5, the second waits."""
    s = sim()
    s.submit(order("a", 5.0))
    s.submit(order("b", 5.0))
    fills, _ = s.on_quote(q(volume=50.0))
    assert [(f.client_order_id, f.quantity) for f in fills] == [("a", 5.0)]
    fills, _ = s.on_quote(q(at=T0 + SEC, volume=50.0))
    assert [(f.client_order_id, f.quantity) for f in fills] == [("b", 5.0)]


def test_zero_volume_fills_nothing() -> None:
    """Nothing traded in the interval: nothing fills; the order waits."""
    s = sim()
    s.submit(order())
    assert s.on_quote(q(volume=0.0)).fills == [] and len(s) == 1


def test_the_grid_floors_each_partial_fill_and_a_sub_step_rest_finishes() -> None:
    """Step 0.5, capacity 1.7: fills of 1.5; a rest under one step ends the order."""
    s = sim(step=0.5)
    s.submit(order(qty=3.3))
    a, b = (s.on_quote(q(at=T0 + i * SEC, volume=17.0)).fills[0] for i in range(2))
    assert (a.quantity, b.quantity) == (1.5, 1.5)
    assert b.done and b.remaining == pytest.approx(0.3) and len(s) == 0


def test_ioc_cancels_the_rest() -> None:
    """IOC with capacity 4 of 10: fills 4, the rest cancelled (done, remaining 6)."""
    s = sim()
    s.submit(order(time_in_force=TimeInForce.IOC))
    (f,), cancelled = s.on_quote(q(volume=40.0))
    assert (f.quantity, f.done, f.remaining) == (4.0, True, 6.0)
    assert cancelled == [] and len(s) == 0


def test_ioc_that_cannot_fill_is_cancelled_whole() -> None:
    """An IOC limit buy below the market: cancelled with its whole quantity."""
    s = sim()
    s.submit(order(limit_price=99.0, time_in_force="IOC"))
    fills, cancelled = s.on_quote(q(100.0))
    assert fills == [] and [(o.client_order_id, r) for o, r in cancelled] == [("o1", 10.0)]


def test_a_whole_rest_fills_off_grid() -> None:
    """Capacity enough for the whole rest: it fills as is (a close of an off-grid position
    takes the whole position)."""
    s = sim(step=0.5)
    s.submit(order(qty=0.3))
    (f,), _ = s.on_quote(q(volume=100.0))
    assert (f.quantity, f.done) == (0.3, True)


def test_fok_fills_whole_or_is_cancelled() -> None:
    """FOK: capacity 4 of 10 cancels it unfilled; with enough capacity it fills whole."""
    s = sim()
    s.submit(order(time_in_force="FOK"))
    fills, cancelled = s.on_quote(q(volume=40.0))
    assert fills == [] and [(o.client_order_id, r) for o, r in cancelled] == [("o1", 10.0)]
    s.submit(order("o2", time_in_force="FOK"))
    (f,), _ = s.on_quote(q(volume=100.0))
    assert (f.quantity, f.done) == (10.0, True)


def test_expired_orders_are_cancelled_at_the_next_observation() -> None:
    """Past expires_ns an order is cancelled, not filled."""
    s = sim(latency_bars=1)
    s.submit(order(expires_ns=T0 + 60 * SEC))
    s.on_quote(q(at=T0))
    fills, cancelled = s.on_quote(q(at=T0 + 60 * SEC))
    assert fills == [] and [r for _, r in cancelled] == [10.0] and len(s) == 0


def test_limit_orders_fill_only_at_or_better_than_the_limit() -> None:
    """A buy limit 100.5 waits while the execution price (slippage in) is above it."""
    s = sim()
    s.submit(order(limit_price=100.5))
    assert s.on_quote(q(100.49)).fills == []  # 100.49 * 1.0002 = 100.51 > 100.5
    (f,), _ = s.on_quote(q(100.0, at=T0 + SEC))
    assert f.price <= 100.5
    s.submit(order("s", side="sell", limit_price=99.5))
    assert s.on_quote(q(99.5, at=T0 + 2 * SEC)).fills == []
    assert len(s.on_quote(q(100.0, at=T0 + 3 * SEC)).fills) == 1


def test_submission_is_idempotent_and_cancel_returns_the_rest() -> None:
    """A re-sent client_order_id is ignored; cancel returns the order and its rest."""
    s = sim()
    assert s.submit(order()) and not s.submit(order(qty=99.0))
    s.on_quote(q(volume=30.0))  # fills 3
    assert [(o.quantity, r) for o, r in s.open_orders()] == [(10.0, 7.0)]
    got = s.cancel("o1")
    assert got is not None and got[1] == pytest.approx(7.0)
    assert s.cancel("o1") is None and len(s) == 0


def test_other_symbols_are_not_touched() -> None:
    """An ETH observation does not fill a BTC order."""
    s = sim()
    s.submit(order())
    assert s.on_quote(q(symbol="ETH")).fills == [] and len(s) == 1


def test_same_seed_same_fills_in_any_processing_order() -> None:
    """With noise on, fills depend on (seed, order id, fill number) only: processing two
    symbols in either order, or one order alone, gives identical fills."""
    def run(symbols: list[str]) -> dict[str, SimFill]:
        s = sim(slippage_noise_bps=1.0, seed=3)
        for sym in symbols:
            s.submit(order(f"id-{sym}", symbol=sym))
        out = {}
        for sym in symbols:
            (f,), _ = s.on_quote(q(symbol=sym))
            out[sym] = f
        return out

    a, b = run(["BTC", "ETH"]), run(["ETH", "BTC"])
    assert a == b and run(["ETH"])["ETH"] == a["ETH"]
    assert a["BTC"].slippage_bps != a["ETH"].slippage_bps


def test_export_restore_round_trips_working_orders() -> None:
    """A restored simulator continues exactly like the original."""
    s = sim(latency_bars=1, slippage_noise_bps=2.0)
    s.submit(order("a"))
    s.submit(order("b", side="sell", symbol="ETH", limit_price=90.0))
    s.on_quote(q(at=T0, volume=30.0))
    s.on_quote(q(at=T0 + SEC, volume=30.0))
    twin = sim(latency_bars=1, slippage_noise_bps=2.0)
    twin.restore_state(s.export_state())
    assert twin.export_state() == s.export_state()
    nxt = q(at=T0 + 2 * SEC, volume=30.0)
    assert twin.on_quote(nxt) == s.on_quote(nxt)


def test_recorded_fills_replay_even_under_another_model() -> None:
    """Replaying the recorded fills through a simulator with another fill model gives the
    recorded fills and the same working orders afterwards."""
    live = sim(slippage_noise_bps=2.0)
    replayed = sim(fee_bps=50.0, slippage_bps=30.0)
    obs = [q(at=T0 + i * SEC, volume=30.0) for i in range(4)]
    for s in (live, replayed):
        s.submit(order("a"))
        s.submit(order("b", time_in_force="IOC"))
    for quote in obs[:2]:
        got = live.on_quote(quote)
        tape = {f.client_order_id: f for f in got.fills}
        assert replayed.on_quote(quote, recorded=tape) == got
    assert replayed.open_orders() == live.open_orders()
    assert replayed.export_state() == live.export_state()


def test_restore_refuses_malformed_state() -> None:
    """Bad version, bad order, remaining beyond the quantity: StateRestoreError."""
    s = sim()
    s.submit(order())
    good = s.export_state()
    row = good["orders"][0]
    for bad in ({**good, "version": 2}, {**good, "orders": [{**row, "remaining": 11.0}]},
                {**good, "orders": [{**row, "order": {**row["order"], "quantity": -1}}]},
                {"orders": []}):
        with pytest.raises(StateRestoreError):
            s.restore_state(bad)
    assert s.export_state() == good


@pytest.mark.parametrize(("field", "kw"), [
    ("quantity", {"qty": 0.0}), ("quantity", {"qty": float("nan")}),
    ("limit_price", {"limit_price": -1.0}), ("client_order_id", {"coid": ""}),
])
def test_bad_orders_name_the_field(field: str, kw: dict[str, Any]) -> None:
    """A bad order is a ValidationError naming the field."""
    with pytest.raises(ValidationError, match=field):
        order(**kw)


def test_bad_quotes_name_the_field() -> None:
    """Non-positive price, negative volume: ValidationError naming it."""
    with pytest.raises(ValidationError, match="price"):
        q(0.0)
    with pytest.raises(ValidationError, match="volume"):
        q(volume=-1.0)
