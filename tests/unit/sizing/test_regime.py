"""Per-symbol regime hysteresis: slow to loosen, fast to tighten, mirrored for shorts."""

from __future__ import annotations

import json

import pytest

from conftest import make_engine, make_signal
from himari_l3 import CascadeIndicators, MarketRegime
from himari_l3.config.schema import RegimeConfig
from himari_l3.sizing.regime import RegimeTracker

UP, DOWN, RANGE, HV, CRISIS = (MarketRegime.TRENDING_UP, MarketRegime.TRENDING_DOWN,
                               MarketRegime.RANGING, MarketRegime.HIGH_VOLATILITY,
                               MarketRegime.CRISIS)


def _tracker(**kw: int) -> RegimeTracker:
    return RegimeTracker(RegimeConfig(**kw))


def _long_path(tracker: RegimeTracker, symbol: str, seq: list[MarketRegime]) -> list[MarketRegime]:
    return [tracker.observe(symbol, r).effective_long for r in seq]


def _short_path(tracker: RegimeTracker, symbol: str, seq: list[MarketRegime]) -> list[MarketRegime]:
    return [tracker.observe(symbol, r).effective_short for r in seq]


def test_default_multiplier_tables() -> None:
    """Long table from the spec; the short table swaps the two trends."""
    t = _tracker()
    assert t.table(1) == {UP: 1.2, DOWN: 0.8, RANGE: 1.0, HV: 0.6, CRISIS: 0.2}
    assert t.table(-1) == {UP: 0.8, DOWN: 1.2, RANGE: 1.0, HV: 0.6, CRISIS: 0.2}


def test_first_observation_sets_state() -> None:
    """A symbol's first observation is its effective regime on both sides."""
    st = _tracker().observe("BTC", HV)
    assert (st.effective_long, st.effective_short) == (HV, HV)


def test_loosen_needs_three_confirmations() -> None:
    """RANGING -> TRENDING_UP (looser for a long) takes effect on the 3rd consecutive
    observation, not before."""
    t = _tracker()
    assert _long_path(t, "BTC", [RANGE, UP, UP, UP, UP]) == [RANGE, RANGE, RANGE, UP, UP]


def test_tighten_is_immediate() -> None:
    """TRENDING_UP -> CRISIS takes effect on the first CRISIS observation."""
    t = _tracker()
    assert _long_path(t, "BTC", [UP, CRISIS]) == [UP, CRISIS]


def test_interrupted_loosening_starts_over() -> None:
    """A loosening interrupted by the old regime needs three fresh confirmations."""
    t = _tracker()
    seq = [HV, RANGE, RANGE, HV, RANGE, RANGE, RANGE]
    assert _long_path(t, "BTC", seq) == [HV, HV, HV, HV, HV, HV, RANGE]


def test_loosen_goes_to_safest_of_recent_window() -> None:
    """Out of CRISIS with HV, RANGING, UP observed: loosen only to the safest of the last 3."""
    t = _tracker()
    assert _long_path(t, "BTC", [CRISIS, HV, RANGE, UP, UP, UP]) == [
        CRISIS, CRISIS, CRISIS, HV, RANGE, UP]


def test_short_side_is_mirrored() -> None:
    """For a short, a downtrend is the loose regime: DOWN -> UP tightens at once, UP -> DOWN
    needs three confirmations; the long side does the opposite."""
    t = _tracker()
    seq = [DOWN, UP, UP, DOWN, DOWN, DOWN]
    assert _short_path(t, "ETH", seq) == [DOWN, UP, UP, UP, UP, DOWN]
    t2 = _tracker()
    assert _long_path(t2, "ETH", [DOWN, UP, UP, UP, DOWN]) == [DOWN, DOWN, DOWN, UP, DOWN]


def test_effective_multiplier_by_direction() -> None:
    """effective() gives each side's regime and its multiplier."""
    t = _tracker()
    st = t.observe("BTC", DOWN)
    assert t.effective(st, 1) == (DOWN, 0.8)
    assert t.effective(st, -1) == (DOWN, 1.2)


def test_last_change_is_judged_per_side() -> None:
    """The short side loosening (UP -> DOWN confirmed) is reported as "loosen", and a step
    where the long side tightens is reported as "tighten"."""
    t = _tracker()
    t.observe("BTC", UP)
    assert t.observe("BTC", DOWN).last_change == "tighten"  # long: UP -> DOWN
    assert t.observe("BTC", DOWN).last_change == "none"
    st = t.observe("BTC", DOWN)  # short: UP -> DOWN confirmed
    assert (st.effective_short, st.last_change) == (DOWN, "loosen")


@pytest.mark.parametrize(("conf", "esc", "seq", "expected"), [
    (1, 1, [RANGE, UP, RANGE], [RANGE, UP, RANGE]),
    (2, 1, [RANGE, UP, UP], [RANGE, RANGE, UP]),
    (3, 2, [UP, CRISIS, CRISIS], [UP, UP, CRISIS]),
    (3, 2, [UP, CRISIS, UP], [UP, UP, UP]),
])
def test_configured_periods(conf: int, esc: int, seq: list[MarketRegime],
                            expected: list[MarketRegime]) -> None:
    """confirmation_periods and escalation_periods set the delays."""
    t = _tracker(confirmation_periods=conf, escalation_periods=esc)
    assert _long_path(t, "BTC", seq) == expected


def test_false_flips_counted() -> None:
    """A raw change whose run ends before 3 observations is a false flip; a confirmed one
    is not."""
    t = _tracker()
    for r in [RANGE, RANGE, UP, RANGE, RANGE, HV, HV, RANGE, UP, UP, UP, RANGE]:
        st = t.observe("BTC", r)
    # runs after the initial one: UP x1, RANGE x2, HV x2, RANGE x1 ended short (4 flips);
    # UP x3 reached confirmation; the last RANGE run has not ended yet
    assert st.false_flips == 4
    assert st.raw_changes == 6


def test_no_false_flip_for_steady_regime() -> None:
    """A constant regime has no raw changes and no false flips."""
    t = _tracker()
    for _ in range(10):
        st = t.observe("BTC", HV)
    assert (st.raw_changes, st.false_flips, st.observations) == (0, 0, 10)


def test_crisis_on_one_symbol_never_changes_another() -> None:
    """CRISIS on BTC leaves ETH's state and multiplier untouched."""
    t = _tracker()
    for _ in range(3):
        t.observe("ETH", UP)
        t.observe("BTC", UP)
    before = t.effective(t.states_["ETH"], 1)
    t.observe("BTC", CRISIS)
    assert t.effective(t.states_["BTC"], 1) == (CRISIS, 0.2)
    assert t.effective(t.states_["ETH"], 1) == before == (UP, 1.2)


def test_engine_regime_is_per_symbol() -> None:
    """Through Phase 1: a CRISIS signal on BTC does not shrink the next ETH size."""
    engine = make_engine()
    calm = CascadeIndicators.calm()
    eth = make_signal(symbol="ETH-USD", regime=UP)
    for _ in range(3):
        first = engine.calculate_position(eth, calm, 3_000.0)
    engine.calculate_position(make_signal(symbol="BTC-USD", regime=CRISIS), calm, 50_000.0)
    after = engine.calculate_position(eth, calm, 3_000.0)
    assert after.position_size_usd == first.position_size_usd
    assert after.diagnostics["regime"]["multiplier"] == 1.2


def test_export_restore_exact() -> None:
    """Regime state survives JSON and continues identically."""
    t = _tracker()
    seq = [UP, UP, CRISIS, HV, RANGE, RANGE, DOWN, UP]
    for i, r in enumerate(seq):
        t.observe(f"S{i % 3}", r)
    other = _tracker()
    other.restore_state(json.loads(json.dumps(t.export_state())))
    assert other.export_state() == t.export_state()
    for r in [RANGE, RANGE, RANGE, CRISIS, UP]:
        a, b = t.observe("S1", r), other.observe("S1", r)
        assert (a.effective_long, a.effective_short, a.false_flips, a.last_change) == (
            b.effective_long, b.effective_short, b.false_flips, b.last_change)


def test_sides_can_observe_different_regimes_and_round_trip() -> None:
    """With a separate short-side view, each side follows its own observations; the state
    (including the short side's history) exports and restores exactly."""
    from himari_l3.config.schema import RegimeConfig
    from himari_l3.contracts import MarketRegime as R
    from himari_l3.sizing.regime import RegimeTracker

    t = RegimeTracker(RegimeConfig())
    t.observe("X", R.RANGING)
    st = t.observe("X", R.TRENDING_DOWN, R.TRENDING_UP)  # safest for long / for short
    assert st.effective_long is R.TRENDING_DOWN and st.effective_short is R.TRENDING_UP
    for _ in range(3):
        st = t.observe("X", R.RANGING)
    assert st.effective_long is R.RANGING and st.effective_short is R.RANGING
    u = RegimeTracker(RegimeConfig())
    u.restore_state(t.export_state())
    assert u.export_state() == t.export_state()
