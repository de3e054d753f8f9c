"""Closed trades teach the learners: each strategy in its own direction, clipped to the
learners' range, the path's history without a second lesson."""

from __future__ import annotations

import pytest

from conftest import make_cascade, make_signal
from himari_l3 import Layer3Phase3Hybrid, ManualClock
from himari_l3.book import ClosedTrade
from himari_l3.book.learning import teach


def trade(ret: float, strategies: dict[str, float], symbol: str = "BTC-USD") -> ClosedTrade:
    """A closed long of 1 unit with return ``ret``."""
    return ClosedTrade("default", symbol, "long", 1.0, 100.0, 100.0 * (1 + ret), 100.0 * ret,
                       ret, 0, "cid", strategies)


def test_each_strategy_learns_in_its_own_direction() -> None:
    """A strategy on the position's side learns +r, one against it -r; zero shares skip."""
    h = Layer3Phase3Hybrid(enable_metrics=False, clock=ManualClock())
    out = teach(h.phase2.phase1, h, [trade(0.02, {"a": 0.75, "b": -0.25, "c": 0.0})],
                {"default": {"BTC-USD": "rl"}})
    assert out[0]["strategies"] == {"a": 0.02, "b": -0.02} and out[0]["path"] == "rl"
    stats = h.phase2.phase1.kelly.stats_
    assert stats[("a", "BTC-USD")].wins == 1 and stats[("b", "BTC-USD")].wins == 0
    assert ("c", "BTC-USD") not in stats
    assert list(h.outcomes_["rl"]) == [0.02] and list(h.outcomes_["baseline"]) == []


def test_returns_are_clipped_and_a_trade_without_a_path_skips_the_history() -> None:
    """A short that lost 150 % teaches -1; no recorded path: no RL-vs-baseline entry."""
    h = Layer3Phase3Hybrid(enable_metrics=False, clock=ManualClock())
    out = teach(h.phase2.phase1, h, [trade(-1.5, {"a": 1.0})], {})
    assert out[0]["realized_return"] == -1.0 and out[0]["path"] is None
    assert sum(len(v) for v in h.outcomes_.values()) == 0
    assert h.phase2.phase1.kelly.stats_[("a", "BTC-USD")].n == 1


def test_a_phase2_engine_learns_without_path_history() -> None:
    """hybrid None (a Phase 2 engine): the strategies still learn."""
    h = Layer3Phase3Hybrid(enable_metrics=False, clock=ManualClock())
    teach(h.phase2.phase1, None, [trade(0.01, {"a": 1.0})], {"default": {"BTC-USD": "rl"}})
    assert h.phase2.phase1.kelly.stats_[("a", "BTC-USD")].n == 1
    assert list(h.outcomes_["rl"]) == []


@pytest.mark.parametrize("teach_flag", [True, False])
def test_record_outcome_teaches_only_when_asked(teach_flag: bool) -> None:
    """Layer3Phase3Hybrid.record_outcome(teach=False) only records the path's history."""
    h = Layer3Phase3Hybrid(enable_metrics=False, clock=ManualClock())
    h.process_signals([make_signal()], make_cascade(), {"BTC-USD": 50_000.0})
    h.record_outcome("BTC-USD", 0.01, False, teach=teach_flag)
    assert (("momentum", "BTC-USD") in h.phase2.phase1.kelly.stats_) is teach_flag
    assert list(h.outcomes_["baseline"]) == [0.01]
