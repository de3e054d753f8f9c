"""Unit tests of the trading-state machine: every trigger, the operator commands, the
cool-down, the day boundary, events and an exact export/restore (a ManualClock throughout)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from himari_l3._clock import ManualClock
from himari_l3._exceptions import StateRestoreError, ValidationError
from himari_l3.config.schema import TradingStateConfig
from himari_l3.observers import RecordingObserver
from himari_l3.trading import (
    HaltAction,
    TradingState,
    TradingStateChanged,
    TradingStateMachine,
    TransitionReason,
    day_index,
)

A, R, H = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED
DAY_NS = 86_400 * 10**9
# 2023-11-14 22:13:20 UTC: ManualClock's default wall time.
START_NS = 1_700_000_000 * 10**9


def machine(**cfg: Any) -> tuple[TradingStateMachine, ManualClock, RecordingObserver]:
    """A machine with the given config overrides, a manual clock and a recording observer."""
    clock = ManualClock(start=0.0)
    obs = RecordingObserver()
    m = TradingStateMachine(TradingStateConfig(**cfg), clock=clock, observer=obs)
    return m, clock, obs


def transitions(obs: RecordingObserver) -> list[tuple[str | None, str, str, str]]:
    """(symbol, old, new, reason) of every transition event."""
    return [(e.symbol, e.old.value, e.new.value, e.reason.value) for e in obs.events
            if isinstance(e, TradingStateChanged) and e.is_transition]


def test_states_order_by_severity_and_parse_case_insensitively() -> None:
    """Codes 0/1/2 and lowercase spellings accepted."""
    assert [s.code for s in (A, R, H)] == [0, 1, 2]
    assert TradingState("halted") is H


def test_starts_active_and_says_so() -> None:
    """A fresh machine is ACTIVE everywhere; announce emits the state without a transition."""
    m, _, obs = machine()
    assert m.state is A and m.effective("BTC") is A and m.not_active() == {}
    m.announce()
    (e,) = obs.events
    assert isinstance(e, TradingStateChanged)
    assert (e.old, e.new, e.reason, e.is_transition) == (A, A, TransitionReason.START, False)


def test_daily_loss_reduces_then_halts() -> None:
    """2.4 % loss (0.8 x 3 %) → REDUCING; 3 % → HALTED; each a transition with its reason."""
    m, _, obs = machine()
    m.observe_equity(100_000.0)
    assert m.observe_equity(97_700.0) is A  # 2.3 %
    assert m.observe_equity(97_600.0) is R  # 2.4 %
    assert m.observe_equity(97_000.0) is H  # 3.0 %
    assert transitions(obs) == [(None, "ACTIVE", "REDUCING", "daily_loss"),
                                (None, "REDUCING", "HALTED", "daily_loss")]
    assert "3.0000% of start-of-day equity 100,000.00 >= limit 3.0000%" in m.status()["detail"]


def test_trips_latch_until_operator_or_cooldown() -> None:
    """A recovered equity does not lift a trip (no cool-down configured)."""
    m, clock, _ = machine()
    m.observe_equity(100_000.0)
    m.observe_equity(96_000.0)
    clock.advance(3600.0)
    assert m.observe_equity(120_000.0) is H
    m.tick()
    assert m.state is H


def test_drawdown_from_the_peak_halts() -> None:
    """Drawdown is measured from the highest equity, across days."""
    m, clock, obs = machine()
    m.observe_equity(100_000.0)
    for _ in range(10):  # +2 % a day for ten days, then the slide
        clock.advance(86_400.0)
        m.observe_equity(m.status()["equity"] * 1.02)
    peak = m.status()["peak_equity"]
    level = peak
    while m.state is not H:
        clock.advance(86_400.0)  # at most 2 % a day: never the daily limit
        level *= 0.98
        m.observe_equity(level)
    assert 1 - level / peak >= 0.15
    assert [t[3] for t in transitions(obs)] == ["drawdown", "drawdown"]


def test_reduce_at_fraction_one_has_no_reducing_stage() -> None:
    """reduce_at_fraction 1.0: straight from ACTIVE to HALTED."""
    m, _, _ = machine(reduce_at_fraction=1.0)
    m.observe_equity(100.0)
    assert m.observe_equity(97.5) is A
    assert m.observe_equity(96.9) is H


def test_zero_equity_halts_and_bad_equity_is_refused() -> None:
    """Equity <= 0 halts; NaN, inf, bools and strings are a ValidationError naming equity."""
    m, _, _ = machine()
    m.observe_equity(100.0)
    for bad in (float("nan"), float("inf"), True, "100"):
        with pytest.raises(ValidationError, match="equity"):
            m.observe_equity(bad)  # type: ignore[arg-type]
    assert m.observe_equity(0.0) is H


def test_day_boundary_resets_start_of_day_equity_at_the_configured_hour() -> None:
    """Start-of-day equity is the last equity before the boundary (08:00 UTC here)."""
    m, clock, _ = machine(day_start_utc="08:00")
    wall = clock.time_ns()
    to_boundary = (DAY_NS - (wall - 8 * 3600 * 10**9) % DAY_NS) / 1e9
    m.observe_equity(100_000.0)
    clock.advance(to_boundary - 60.0)
    m.observe_equity(98_000.0)  # same day: 2 % loss
    assert m.status()["start_of_day_equity"] == 100_000.0
    clock.advance(120.0)  # past 08:00
    m.observe_equity(97_500.0)
    s = m.status()
    assert s["start_of_day_equity"] == 98_000.0  # the last mark before the boundary
    assert s["daily_loss_pct"] == pytest.approx(1 - 97_500 / 98_000)


def test_day_index_honours_the_start_hour() -> None:
    """A day starting at 08:00 UTC: 07:59 belongs to the previous day."""
    midnight = 19_000 * DAY_NS
    assert day_index(midnight, "00:00") == 19_000
    assert day_index(midnight + 8 * 3600 * 10**9 - 1, "08:00") == 18_999
    assert day_index(midnight + 8 * 3600 * 10**9, "08:00") == 19_000


def test_cooldown_resumes_only_when_the_trigger_no_longer_holds() -> None:
    """Cool-down elapsed with the loss still beyond the limit: still HALTED; the next day
    (start-of-day re-marked) it resumes, reason cooldown."""
    m, clock, obs = machine(cooldown_sec=600.0)
    m.observe_equity(100_000.0)
    m.observe_equity(96_000.0)
    clock.advance(601.0)
    assert m.observe_equity(96_500.0) is H  # 3.5 % below the same start of day
    clock.advance(86_400.0)
    assert m.observe_equity(96_600.0) is A  # new day: start-of-day equity 96,500
    assert transitions(obs)[-1] == (None, "HALTED", "ACTIVE", "cooldown")


def test_cooldown_can_land_on_reducing() -> None:
    """After the cool-down the state is what the triggers call for now (REDUCING here)."""
    m, clock, _ = machine(cooldown_sec=60.0)
    m.observe_equity(100_000.0)
    m.observe_equity(96_000.0)
    clock.advance(61.0)
    assert m.observe_equity(97_500.0) is R  # 2.5 %: between 0.8 x limit and the limit


def test_tick_expires_a_due_cooldown_without_new_equity() -> None:
    """tick() alone applies a due cool-down."""
    m, clock, _ = machine(cooldown_sec=60.0, max_drawdown_pct=0.5)
    m.observe_equity(100.0)
    m.observe_equity(96.0)
    m.command("ACTIVE", "accept")  # re-based at 96
    m.observe_equity(93.0)  # 3.1 % below 96
    assert m.state is H
    clock.advance(86_400.0)
    m.observe_equity(93.0)  # new day at 93: trigger gone, cool-down also due → resumed
    assert m.state is A


def test_operator_halt_never_expires_and_resume_rebases() -> None:
    """A manual halt survives any cool-down; a resume re-bases the references so the same
    loss does not re-trip, and a further 3 % does."""
    m, clock, obs = machine(cooldown_sec=1.0)
    m.observe_equity(100_000.0)
    assert m.command("HALTED", "kill switch") is H
    clock.advance(10_000.0)
    m.tick()
    m.observe_equity(100_000.0)
    assert m.state is H
    m.observe_equity(96_000.0)
    assert m.command(A, "resume after review") is A
    assert m.status()["start_of_day_equity"] == 96_000.0 == m.status()["peak_equity"]
    assert m.observe_equity(96_000.0) is A
    assert m.observe_equity(93_000.0) is H  # 3.1 % below the re-based 96,000
    reasons = [t[3] for t in transitions(obs)]
    assert reasons == ["manual", "manual", "daily_loss"]


def test_operator_can_lower_an_automatic_halt_to_reducing() -> None:
    """An operator REDUCING over an automatic HALTED takes effect (the trip is cleared)."""
    m, _, _ = machine()
    m.observe_equity(100.0)
    m.observe_equity(90.0)
    assert m.state is H
    assert m.command("REDUCING", "wind down by hand") is R
    assert m.status()["reason"] == "manual"


def test_repeated_command_updates_the_reason_without_a_transition() -> None:
    """HALTED twice: one transition, the latest reason text shown."""
    m, _, obs = machine()
    m.command(H, "first")
    m.command(H, "second")
    assert len(transitions(obs)) == 1
    assert m.status()["detail"] == "operator: second"


def test_bad_commands_are_refused_naming_the_field() -> None:
    """Unknown state, empty / too long / unprintable reason: ValidationError, no change."""
    m, _, _ = machine()
    with pytest.raises(ValidationError, match="state"):
        m.command("PAUSED", "x")
    for reason in ("", "   ", "x" * 201, "a\nb"):
        with pytest.raises(ValidationError, match="reason"):
            m.command(H, reason)
    assert m.state is A


def test_symbol_halt_is_independent_and_effective_takes_the_worse() -> None:
    """Halting one symbol leaves the others; a portfolio halt covers every symbol."""
    m, _, obs = machine()
    m.command(H, "bad fills", symbol="ETH")
    assert m.effective("ETH") is H and m.effective("BTC") is A and m.state is A
    m.command(R, "risk off")
    assert m.effective("BTC") is R and m.effective("ETH") is H
    assert m.status()["symbols"] == {"ETH": "HALTED"}
    m.command(A, "resume", symbol="ETH")
    assert m.not_active() == {} and m.effective("ETH") is R
    assert transitions(obs)[0] == ("ETH", "ACTIVE", "HALTED", "manual")


def test_cascade_exit_halts_the_symbol_until_cooldown_and_calm() -> None:
    """EXIT halts the symbol; the cool-down lifts it only once the reading is not EXIT."""
    m, clock, obs = machine(cooldown_sec=300.0)
    assert m.observe_cascade("SOL", True) is H
    clock.advance(400.0)
    assert m.observe_cascade("SOL", True) is H  # still EXIT
    clock.advance(1.0)
    assert m.observe_cascade("SOL", False) is A
    assert transitions(obs) == [("SOL", "ACTIVE", "HALTED", "cascade_exit"),
                                ("SOL", "HALTED", "ACTIVE", "cooldown")]


def test_cascade_exit_without_cooldown_needs_the_operator() -> None:
    """No cool-down: calm readings do not lift a cascade halt; a symbol resume does, and
    a later EXIT halts again."""
    m, clock, _ = machine()
    m.observe_cascade("SOL", True)
    clock.advance(86_400.0)
    assert m.observe_cascade("SOL", False) is H
    assert m.command(A, "cascade over", symbol="SOL") is A
    assert m.observe_cascade("SOL", True) is H


def test_stale_data_reduces_the_symbol_until_fresh() -> None:
    """A signal 6 s old (limit 5 s) → REDUCING; fresh data → ACTIVE (reason fresh_data)."""
    m, clock, obs = machine()
    now = clock.time_ns()
    assert m.observe_data("BTC", signal_ns=now - 6 * 10**9, price_ns=now) is R
    assert "signal 6.000 s old > stale_after_sec 5" in m.status()["symbol_details"]["BTC"][
        "detail"]
    assert m.observe_data("BTC", signal_ns=now - 5 * 10**9, price_ns=now) is A  # 5 s: fresh
    clock.advance(10.0)
    assert m.observe_data("ETH", price_ns=now) is R  # a price 10 s old
    assert [t[3] for t in transitions(obs)] == ["stale_data", "fresh_data", "stale_data"]


def test_fresh_data_does_not_lift_a_manual_or_cascade_halt() -> None:
    """Stale is one component: clearing it leaves a manual halt in force."""
    m, clock, _ = machine()
    now = clock.time_ns()
    m.command(H, "manual", symbol="BTC")
    m.observe_data("BTC", signal_ns=now - 60 * 10**9)
    assert m.observe_data("BTC", signal_ns=now) is H


def test_resume_of_a_stale_symbol_stays_reducing() -> None:
    """Operator ACTIVE on a stale symbol: REDUCING (reason manual, the detail says stale)."""
    m, clock, _ = machine()
    now = clock.time_ns()
    m.command(H, "manual", symbol="BTC")
    m.observe_data("BTC", signal_ns=now - 60 * 10**9)
    assert m.command(A, "resume", symbol="BTC") is R
    d = m.status()["symbol_details"]["BTC"]
    assert d["reason"] == "manual" and "stale_after_sec" in d["detail"]


def test_clean_symbols_are_forgotten() -> None:
    """A symbol back to ACTIVE with nothing set holds no memory (bounded state)."""
    m, clock, _ = machine()
    for i in range(1000):
        m.observe_data(f"S{i}", signal_ns=clock.time_ns())
    m.command(H, "x", symbol="S1")
    m.command(A, "y", symbol="S1")
    assert m.export_state()["symbols"] == {}


def test_reconfigure_applies_new_limits_at_the_next_observation() -> None:
    """A tighter daily limit (hot reload) trips on the next equity mark."""
    m, _, _ = machine()
    m.observe_equity(100.0)
    m.observe_equity(98.5)
    m.reconfigure(TradingStateConfig(daily_loss_limit_pct=0.01))
    assert m.state is A and m.halt_action is HaltAction.FLATTEN
    assert m.observe_equity(98.5) is H
    m.reconfigure(TradingStateConfig(halt_action="freeze"))
    assert m.halt_action is HaltAction.FREEZE


def test_export_restore_round_trips_exactly() -> None:
    """A restored machine exports the same state and behaves the same afterwards."""
    m, clock, _ = machine(cooldown_sec=120.0)
    m.observe_equity(100.0)
    m.observe_equity(96.5)
    m.observe_cascade("SOL", True)
    m.command(R, "wind down", symbol="ETH")
    m.observe_data("BTC", signal_ns=clock.time_ns() - 10**10)
    state = m.export_state()
    twin = TradingStateMachine(TradingStateConfig(cooldown_sec=120.0), clock=clock)
    twin.restore_state(state)
    assert twin.export_state() == state and twin.status() == m.status()
    clock.advance(86_400.0)
    assert twin.observe_equity(97.0) is m.observe_equity(97.0)
    assert twin.export_state() == m.export_state()


def test_restore_refuses_malformed_state_and_changes_nothing() -> None:
    """Wrong version, missing keys, unknown states, non-finite references."""
    m, _, _ = machine()
    m.command(H, "x")
    good = m.export_state()
    bad_states: list[dict[str, Any]] = [
        {**good, "version": 9}, {k: v for k, v in good.items() if k != "book"},
        {**good, "book": {**good["book"], "state": "PAUSED"}},
        {**good, "equity": float("nan")}, {**good, "symbols": []},
    ]
    for bad in bad_states:
        with pytest.raises(StateRestoreError):
            m.restore_state(bad)
    assert m.export_state() == good


def test_status_is_json_ready() -> None:
    """status() has the documented keys and an ISO 'since'."""
    m, _, _ = machine()
    m.command(H, "x", symbol="BTC")
    s = m.status()
    assert {"state", "reason", "since", "symbols"} <= s.keys()
    assert s["since"].endswith("+00:00") and s["symbols"] == {"BTC": "HALTED"}


def test_concurrent_commands_end_in_a_consistent_state() -> None:
    """Threads hammering commands and observations: the final state matches the last
    transition event of each scope (events emitted in order under the lock)."""
    m, _, obs = machine()
    m.observe_equity(100.0)

    def work(i: int) -> None:
        for k in range(200):
            m.command((A, R, H)[(i + k) % 3], f"t{i}", symbol=None if k % 2 else "BTC")
            m.observe_equity(100.0 - (k % 5))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    last: dict[str | None, TradingState] = {}
    for e in obs.events:
        assert isinstance(e, TradingStateChanged)
        last[e.symbol] = e.new
    assert last[None] is m.state
    assert last.get("BTC", A) is m.symbol_state("BTC")
