"""From position to target: legs, rounding toward the safe side, minimums, closes, flips."""

from __future__ import annotations

import json

import pytest

from himari_l3.book.intents import (
    IntentCause,
    IntentReason,
    OrderIntent,
    client_order_id,
    plan_legs,
)
from himari_l3.book.markets import MarketRules

BTC = MarketRules("BTC", step_size=0.001, tick_size=0.5, min_quantity=0.001,
                  max_quantity=2.0, min_notional=100.0)


def test_an_increase_rounds_toward_zero() -> None:
    """0.3337 wanted from flat: 0.333 bought (never more than the target)."""
    legs, dropped = plan_legs("BTC", 0.0, 0.3337, 50_000.0, BTC)
    assert [(leg.side, leg.quantity, leg.reduce_only, leg.reason) for leg in legs] == [
        ("buy", 0.333, False, IntentReason.OPEN)]
    assert dropped == []


def test_a_reduction_rounds_away_from_zero() -> None:
    """From 1.0 to 0.4441: sell 0.556, so the position (0.444) ends inside the target."""
    legs, _ = plan_legs("BTC", 1.0, 0.4441, 50_000.0, BTC)
    assert [(leg.quantity, leg.reduce_only, leg.reason) for leg in legs] == [
        (0.556, True, IntentReason.REDUCE)]


def test_below_the_minimum_notional_an_increase_is_dropped_with_its_reason() -> None:
    """An order under min notional is not sent; it is reported."""
    legs, dropped = plan_legs("BTC", 0.0, 0.0015, 50_000.0, BTC)
    assert legs == [] and [d.reason for d in dropped] == ["below_min_notional"]
    legs, dropped = plan_legs("BTC", 0.0, 0.0004, 50_000.0, BTC)
    assert legs == [] and [d.reason for d in dropped] == ["below_min_quantity"]


def test_a_close_takes_the_whole_position_whatever_its_size() -> None:
    """Target 0: the whole (even tiny, off-grid) position, reduce-only."""
    legs, dropped = plan_legs("BTC", 0.00037, 0.0, 50_000.0, BTC)
    assert [(leg.side, leg.quantity, leg.reduce_only, leg.reason) for leg in legs] == [
        ("sell", 0.00037, True, IntentReason.CLOSE)]
    assert dropped == []


def test_a_small_reduction_is_raised_to_the_minimum_or_becomes_a_close() -> None:
    """Reducing by less than min notional reduces by the minimum; past the whole: close."""
    legs, _ = plan_legs("BTC", 0.5, 0.4995, 50_000.0, BTC)
    assert [leg.quantity for leg in legs] == [0.002]  # 100 USD / 50,000 = 0.002
    legs, _ = plan_legs("BTC", 0.0015, 0.001, 50_000.0, BTC)
    assert [(leg.quantity, leg.reason) for leg in legs] == [(0.0015, IntentReason.CLOSE)]


def test_a_flip_is_a_close_and_an_open() -> None:
    """Long 1 to short 0.5: close 1 reduce-only, then open 0.5 short."""
    legs, _ = plan_legs("BTC", 1.0, -0.5, 50_000.0, BTC)
    assert [(leg.side, leg.quantity, leg.reduce_only, leg.reason) for leg in legs] == [
        ("sell", 1.0, True, IntentReason.CLOSE), ("sell", 0.5, False, IntentReason.OPEN)]


def test_legs_above_the_maximum_quantity() -> None:
    """An increase is capped at the maximum; a close is split into pieces of it."""
    legs, _ = plan_legs("BTC", 0.0, 5.0, 50_000.0, BTC)
    assert [leg.quantity for leg in legs] == [2.0]
    legs, _ = plan_legs("BTC", 4.5, 0.0, 50_000.0, BTC)
    assert [leg.quantity for leg in legs] == [2.0, 2.0, 0.5]
    assert all(leg.reduce_only for leg in legs)


def test_without_market_rules_the_book_only_reduces() -> None:
    """A symbol the markets file does not list: no increase, reductions unrounded."""
    legs, dropped = plan_legs("DOGE", 0.0, 10.0, 0.2, None)
    assert legs == [] and [d.reason for d in dropped] == ["no_market_rules"]
    legs, _ = plan_legs("DOGE", 10.0, 3.3333, 0.2, None)
    assert [leg.quantity for leg in legs] == [pytest.approx(6.6667)]


def test_client_order_id_is_deterministic_and_exchange_safe() -> None:
    """Same decision, symbol and leg: same id; 32 characters of [0-9a-z]."""
    a = client_order_id("default", 7, "BTC-USD", 0)
    assert a == client_order_id("default", 7, "BTC-USD", 0)
    assert a != client_order_id("default", 7, "BTC-USD", 1)
    assert a != client_order_id("other", 7, "BTC-USD", 0)
    assert len(a) == 32 and a.isalnum() and a.islower()


def test_intent_record_is_frozen_json_and_self_validating() -> None:
    """to_dict / from_dict round-trip; frozen; a non-positive quantity is refused."""
    intent = OrderIntent("p|1|X|0", client_order_id("p", 1, "X", 0), "p", "X", "buy", 0.5,
                         "market", None, False, "GTC", 95.0, 110.0, IntentReason.OPEN,
                         IntentCause.ALLOCATION, 1, 100.0, 50.0, 10, 20)
    assert OrderIntent.from_dict(intent.to_dict()) == intent
    assert intent.to_dict()["reason"] == "open" and intent.signed_quantity == 0.5
    assert json.loads(json.dumps(intent.to_dict())) == intent.to_dict()
    with pytest.raises(AttributeError):
        intent.quantity = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="quantity"):
        OrderIntent(**{**intent._asdict(), "quantity": 0.0})
    with pytest.raises(ValueError, match="side"):
        OrderIntent(**{**intent._asdict(), "side": "hold"})
