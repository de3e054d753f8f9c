"""Average-cost accounting: entries, partial closes, flips, fees — closed form values."""

from __future__ import annotations

import pytest

from himari_l3.book.positions import Position


def test_adding_averages_the_entry() -> None:
    """Two buys: the average entry is the quantity-weighted price."""
    p = Position("X")
    assert p.fill(1.0, 100.0, 0.1) is None
    assert p.fill(3.0, 120.0, 0.3) is None
    assert (p.quantity, p.avg_price) == (4.0, 115.0)
    assert p.fees_paid == pytest.approx(0.4) and p.realized_pnl == 0.0


def test_partial_close_realises_at_the_average_entry() -> None:
    """Selling part of a long realises (price - entry) x closed; the entry stays."""
    p = Position("X", 4.0, 115.0)
    assert p.fill(-1.0, 125.0, 0.0) == (1.0, 10.0)
    assert (p.quantity, p.avg_price, p.realized_pnl) == (3.0, 115.0, 10.0)
    assert p.unrealized_pnl(120.0) == pytest.approx(15.0)


def test_short_profits_when_the_price_falls() -> None:
    """A short opened at 100 and bought back at 90 realises +10 per unit."""
    p = Position("X")
    p.fill(-2.0, 100.0, 0.0)
    assert p.fill(2.0, 90.0, 0.0) == (2.0, 20.0)
    assert (p.quantity, p.avg_price) == (0.0, 0.0)


def test_flip_closes_then_opens_at_the_fill_price() -> None:
    """A sell larger than the long closes it (realising) and opens a short at the fill."""
    p = Position("X", 1.0, 100.0)
    assert p.fill(-3.0, 110.0, 0.0) == (1.0, 10.0)
    assert (p.quantity, p.avg_price) == (-2.0, 110.0)


def test_state_round_trips_and_refuses_non_finite() -> None:
    """to_state / from_state are exact; a NaN field is refused on restore."""
    p = Position("X", 0.3, 101.5, -2.25, 0.125, {"momentum": 1.0})
    q = Position.from_state("X", p.to_state())
    assert q.to_state() == p.to_state()
    with pytest.raises(ValueError, match="non-finite"):
        Position.from_state("X", [float("nan"), 1.0, 0.0, 0.0, {}])
