"""Instrument rules: the two file shapes, and rounding that never passes the amount asked."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from himari_l3._exceptions import ConfigError
from himari_l3.book.markets import MarketRules, Markets, parse_markets

CCXT = {"BTC/USDT": {"id": "BTCUSDT", "symbol": "BTC/USDT", "active": True,
                     "precision": {"amount": 0.001, "price": 0.1},
                     "limits": {"amount": {"min": 0.001, "max": 100.0},
                                "cost": {"min": 5.0}, "price": {"min": None}}}}


def test_floor_is_decimal_not_binary() -> None:
    """0.3 on a 0.1 grid stays 0.3 (a float floor of 0.3/0.1 would give 0.2)."""
    r = MarketRules("X", step_size=0.1)
    assert r.floor_quantity(0.3) == 0.3
    assert r.ceil_quantity(0.3) == 0.3
    assert r.floor_quantity(0.35) == 0.3 and r.ceil_quantity(0.31) == 0.4


@settings(max_examples=300, deadline=None)
@given(qty=st.floats(0.0, 1e6), step=st.sampled_from([1e-8, 0.001, 0.01, 0.1, 0.5, 1.0, 25.0]))
def test_rounding_brackets_the_amount(qty: float, step: float) -> None:
    """floor <= qty <= ceil, both on the grid, at most one step apart."""
    r = MarketRules("X", step_size=step)
    lo, hi = r.floor_quantity(qty), r.ceil_quantity(qty)
    assert lo <= qty <= hi
    assert hi - lo <= step * (1 + 1e-9) + 1e-12 * hi
    for v in (lo, hi):  # exactly on the grid, as the decimal the float prints as
        assert Decimal(repr(v)) % Decimal(repr(step)) == 0


def test_prices_round_to_the_tick_in_the_asked_direction() -> None:
    """Up or down to the tick; never to zero."""
    r = MarketRules("X", tick_size=0.5)
    assert r.round_price(100.26, up=True) == 100.5
    assert r.round_price(100.26, up=False) == 100.0
    assert r.round_price(0.1, up=False) == 0.5


def test_ccxt_markets_tick_size_mode_and_id_alias() -> None:
    """ccxt's precision and limits; the market is found by key and by id."""
    rules = parse_markets(CCXT)
    r = rules["BTC/USDT"]
    assert (r.step_size, r.tick_size, r.min_quantity, r.max_quantity, r.min_notional) == (
        0.001, 0.1, 0.001, 100.0, 5.0)
    assert rules["BTCUSDT"] is r


def test_ccxt_markets_decimal_places_mode() -> None:
    """precision as a number of decimals: 3 -> 0.001."""
    data = {"X": {"precision": {"amount": 3, "price": 2}, "limits": {}}}
    r = parse_markets(data, "decimal_places")["X"]
    assert (r.step_size, r.tick_size) == (0.001, 0.01)
    with pytest.raises(ConfigError, match=r"markets\[X\]\.precision\.amount"):
        parse_markets({"X": {"precision": {"amount": 0.5}}}, "decimal_places")


def test_flat_table_and_its_errors_name_symbol_and_field() -> None:
    """The small table shape; unknown keys and bad values are errors naming the field."""
    r = parse_markets({"BTC-USD": {"step_size": 0.01, "min_notional": 10}})["BTC-USD"]
    assert (r.step_size, r.min_notional, r.tick_size) == (0.01, 10.0, None)
    with pytest.raises(ConfigError, match=r"markets\[BTC-USD\]\.stepsize: unknown key"):
        parse_markets({"BTC-USD": {"stepsize": 0.01}})
    with pytest.raises(ConfigError, match=r"markets\[BTC-USD\]\.step_size was -1"):
        parse_markets({"BTC-USD": {"step_size": -1}})
    with pytest.raises(ConfigError, match=r"expected a number"):
        parse_markets({"BTC-USD": {"min_notional": "ten"}})
    with pytest.raises(ConfigError, match="non-empty mapping"):
        parse_markets([])


def test_markets_without_a_file_trade_everything_with_one_only_what_it_lists() -> None:
    """No file: unconstrained rules for any symbol; a file: None for a symbol it omits."""
    free = Markets()
    assert not free.configured and free.rules("ANY").step_size is None
    listed = Markets(parse_markets(CCXT))
    assert listed.rules("BTCUSDT") is not None and listed.rules("ETHUSDT") is None
