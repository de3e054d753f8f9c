"""Unit tests of the trading-state gate: closed-form cases for each state."""

from __future__ import annotations

import pytest

from himari_l3.trading import (
    HaltAction,
    TradingState,
    allowed_delta,
    allowed_target,
    increases_exposure,
)

A, R, H = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED
FREEZE = HaltAction.FREEZE


@pytest.mark.parametrize(("state", "position", "target", "halt", "expected"), [
    (A, 5.0, 9.0, HaltAction.FLATTEN, 9.0),
    (A, 5.0, -3.0, HaltAction.FLATTEN, -3.0),
    (R, 5.0, 9.0, HaltAction.FLATTEN, 5.0),    # no increase
    (R, 5.0, 2.0, HaltAction.FLATTEN, 2.0),    # a reduction passes
    (R, 5.0, -3.0, HaltAction.FLATTEN, 0.0),   # no flip: close only
    (R, -5.0, -9.0, HaltAction.FLATTEN, -5.0),
    (R, -5.0, 4.0, HaltAction.FLATTEN, 0.0),
    (R, 0.0, 4.0, HaltAction.FLATTEN, 0.0),    # nothing held: nothing opened
    (H, 5.0, 9.0, HaltAction.FLATTEN, 0.0),
    (H, -5.0, 0.0, HaltAction.FLATTEN, 0.0),
    (H, 5.0, 0.0, FREEZE, 5.0),                # freeze: not even a reduction
    (H, -5.0, 9.0, FREEZE, -5.0),
])
def test_allowed_target(state: TradingState, position: float, target: float,
                        halt: HaltAction, expected: float) -> None:
    """The target each state allows, by case."""
    assert allowed_target(state, position, target, halt) == expected


def test_increases_exposure() -> None:
    """Growth and flips increase exposure; reductions and closes do not."""
    assert increases_exposure(0.0, 1.0) and increases_exposure(2.0, 1.0)
    assert increases_exposure(2.0, -5.0)  # flips to -3
    assert not increases_exposure(2.0, -2.0) and not increases_exposure(-2.0, 1.0)


def test_allowed_delta_trims_an_open_order() -> None:
    """An open buy of 4 on a long of 5: none while REDUCING; a sell of 8 trimmed to 5."""
    assert allowed_delta(A, 5.0, 4.0) == 4.0
    assert allowed_delta(R, 5.0, 4.0) == 0.0
    assert allowed_delta(R, 5.0, -8.0) == -5.0
    assert allowed_delta(R, 5.0, -2.0) == -2.0
    assert allowed_delta(H, 5.0, -2.0) == -2.0  # toward flat, not past it
    assert allowed_delta(H, 5.0, -2.0, FREEZE) == 0.0
    assert allowed_delta(H, -5.0, 9.0) == 5.0
