"""Property tests of the trading states: while not ACTIVE nothing adds exposure, for any
finite position, target and sequence of equity marks and commands."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from himari_l3._clock import ManualClock
from himari_l3.config.schema import TradingStateConfig
from himari_l3.trading import (
    HaltAction,
    TradingState,
    TradingStateMachine,
    allowed_delta,
    allowed_target,
    increases_exposure,
)

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)
states = st.sampled_from(list(TradingState))
halts = st.sampled_from(list(HaltAction))


@given(states, finite, finite, halts)
def test_no_state_but_active_adds_exposure(state: TradingState, position: float,
                                           target: float, halt: HaltAction) -> None:
    """Not ACTIVE: the allowed target lies between 0 and the position (no growth, no flip)."""
    out = allowed_target(state, position, target, halt)
    if state is TradingState.ACTIVE:
        assert out == target
    else:
        assert abs(out) <= abs(position)
        assert out * position >= 0.0
        assert not increases_exposure(position, out - position)


@given(states, finite, finite, halts)
def test_allowed_delta_is_a_part_of_the_order_that_adds_nothing(
        state: TradingState, position: float, delta: float, halt: HaltAction) -> None:
    """The allowed part has the order's sign, is no larger, and adds no exposure unless
    ACTIVE."""
    part = allowed_delta(state, position, delta, halt)
    assert part * delta >= 0.0 and abs(part) <= abs(delta)
    if state is not TradingState.ACTIVE:
        assert not increases_exposure(position, part)


steps = st.lists(st.one_of(
    st.tuples(st.just("equity"), st.floats(min_value=-10.0, max_value=300.0)),
    st.tuples(st.just("advance"), st.floats(min_value=0.0, max_value=200_000.0)),
    st.tuples(st.just("command"), states),
    st.tuples(st.just("cascade"), st.booleans()),
), max_size=40)


@settings(max_examples=150)
@given(steps, st.one_of(st.none(), st.floats(min_value=1.0, max_value=100_000.0)))
def test_machine_invariants_over_any_sequence(seq: list[tuple[str, object]],
                                              cooldown: float | None) -> None:
    """Over any sequence: a loss beyond the limit since the last command is never ACTIVE;
    an operator HALTED holds until the next command; restore reproduces the machine."""
    clock = ManualClock(start=0.0)
    m = TradingStateMachine(TradingStateConfig(cooldown_sec=cooldown), clock=clock)
    manual_halt = False
    for kind, value in seq:
        if kind == "equity":
            assert isinstance(value, float)
            m.observe_equity(value)
            s = m.status()
            if s["daily_loss_pct"] >= 0.03 or s["drawdown_pct"] >= 0.15:
                assert m.state is TradingState.HALTED
        elif kind == "advance":
            assert isinstance(value, float)
            clock.advance(value)
            m.tick()
        elif kind == "command":
            assert isinstance(value, TradingState)
            m.command(value, "test")
            manual_halt = value is TradingState.HALTED
        else:
            m.observe_cascade("SOL", bool(value))
            if value:
                assert m.effective("SOL") is TradingState.HALTED
        if manual_halt:
            assert m.state is TradingState.HALTED
    twin = TradingStateMachine(TradingStateConfig(cooldown_sec=cooldown), clock=clock)
    twin.restore_state(m.export_state())
    assert twin.export_state() == m.export_state()
