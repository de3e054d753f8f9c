"""The correlation monitor's memory is bounded for any sequence of rows (issue 13).

One /v1/returns row with 8,000 distinct symbols (144 KB) took the server to 1.5 GB: stats()
built dense N x N arrays over every symbol ever seen, and the keys were not validated. One
row with timestamp_ns 9e18 made every later row fail, across restarts.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from himari_l3 import ManualClock
from himari_l3._exceptions import ValidationError
from himari_l3.config.schema import CorrelationConfig, parse_config
from himari_l3.portfolio.correlation import (
    CorrelationMonitor,
    InvalidReturnsException,
    ledoit_wolf_correlation,
)

INT64_MAX = 2**63 - 1


def monitor(clock: ManualClock | None = None, **cfg: object) -> CorrelationMonitor:
    """A monitor built from a CorrelationConfig with overrides."""
    return CorrelationMonitor.from_config(parse_config(CorrelationConfig, cfg),
                                          clock=clock or ManualClock())


def test_stats_over_8000_one_off_symbols_stay_small() -> None:
    """Rows of never-repeated symbols (within the caps) never make an N x N matrix: peak
    traced memory of the updates and stats stays under 20 MB (it was 1.5 GB for 8,000)."""
    m = monitor(max_symbols=8_000, max_symbols_per_row=8_000)
    tracemalloc.start()
    try:
        m.update({f"S{i:05d}": 0.001 for i in range(8_000)}, 1)
        stats = m.stats()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20e6, peak
    assert (stats["observations"], stats["shrinkage"], stats["max_abs_correlation"]) == (
        1, 1.0, 0.0)
    assert len(stats["symbols"]) == len(stats["aligned_symbols"]) == 8_000


def test_a_row_over_the_per_row_cap_is_refused_naming_returns() -> None:
    """More symbols in one row than max_symbols_per_row: a ValidationError on 'returns'."""
    m = monitor(max_symbols_per_row=3, max_symbols=10)
    with pytest.raises(InvalidReturnsException) as info:
        m.update({s: 0.0 for s in "ABCD"}, 1)
    assert isinstance(info.value, ValidationError)
    assert info.value.field == "returns" and info.value.value == 4
    assert "portfolio.correlation.max_symbols_per_row (3)" in info.value.expected
    assert m.stats()["rows"] == 0  # nothing changed


def test_distinct_symbols_per_window_are_capped_and_free_up_as_rows_age_out() -> None:
    """New symbols beyond max_symbols are refused; once old rows leave the window, room
    comes back (the count is of symbols in the window, not ever seen)."""
    m = monitor(window=5, min_observations=3, max_symbols_per_row=2, max_symbols=4)
    m.update({"A": 0.0, "B": 0.0}, 1)
    m.update({"C": 0.0, "D": 0.0}, 2)
    m.update({"A": 0.01, "C": 0.0}, 3)  # known symbols: fine
    with pytest.raises(InvalidReturnsException) as info:
        m.update({"E": 0.0}, 4)
    assert info.value.field == "returns" and info.value.value == 5
    assert "portfolio.correlation.max_symbols (4)" in info.value.expected
    for t in range(4, 7):
        m.update({"A": 0.0, "C": 0.0}, t)  # B and D age out of the 5-row window
    m.update({"E": 0.0}, 7)
    assert m.symbols == ["A", "C", "E"]


def test_merging_a_row_into_the_last_timestamp_counts_the_new_symbols() -> None:
    """A same-timestamp row merges into the last one; its new symbols count toward the caps."""
    m = monitor(max_symbols_per_row=2, max_symbols=3)
    m.update({"A": 0.0, "B": 0.0}, 5)
    with pytest.raises(InvalidReturnsException) as info:
        m.update({"C": 0.0, "D": 0.0}, 5)
    assert info.value.value == 4
    m.update({"C": 0.0}, 5)
    assert m.symbols == ["A", "B", "C"]


@pytest.mark.parametrize("key", ["", "   ", "x" * 65, "BTC\n", "\ud800", "a\x00b", 7])
def test_symbol_keys_follow_the_signal_symbol_rules(key: object) -> None:
    """Keys: non-empty, printable, at most 64 characters (as TacticalSignal.symbol)."""
    m = monitor()
    with pytest.raises(InvalidReturnsException) as info:
        m.update({"BTC-USD": 0.0, key: 0.01}, 1)  # type: ignore[dict-item]
    assert info.value.field == "returns"
    assert m.stats()["rows"] == 0


@pytest.mark.parametrize("ts", [-1, INT64_MAX + 1, 2**80, 9_000_000_000_000_000_000, True, 1.5])
def test_timestamps_outside_int64_or_far_ahead_are_refused(ts: object) -> None:
    """timestamp_ns must be an int in [0, 2**63 - 1] and at most max_clock_skew_sec ahead of
    the clock; the monitor is unchanged, so the next good row is accepted."""
    clock = ManualClock()
    m = monitor(clock)
    with pytest.raises(InvalidReturnsException) as info:
        m.update({"BTC-USD": 0.0}, ts)  # type: ignore[arg-type]
    assert info.value.field == "timestamp_ns"
    m.update({"BTC-USD": 0.01}, clock.time_ns())
    assert m.stats()["rows"] == 1


def test_clock_skew_bound_is_configurable() -> None:
    """A row up to max_clock_skew_sec ahead is accepted; one nanosecond more is not."""
    clock = ManualClock()
    m = monitor(clock, max_clock_skew_sec=5.0)
    now = clock.time_ns()
    with pytest.raises(InvalidReturnsException, match="max_clock_skew_sec"):
        m.update({"A": 0.0}, now + 5_000_000_001)
    m.update({"A": 0.0}, now + 5_000_000_000)
    clock.advance(10.0)
    m.update({"A": 0.0}, clock.time_ns())  # the clock caught up: later rows flow again


def test_stats_cover_only_symbols_with_enough_aligned_data() -> None:
    """A symbol seen once does not drag the statistics of the others down to identity;
    during warm-up the most observed symbols are counted."""
    rng = np.random.default_rng(4)
    m = monitor(window=60, min_observations=10)
    for t in range(40):
        common = float(rng.normal(0, 0.01))
        m.update({"A": common + float(rng.normal(0, 0.002)),
                  "B": common + float(rng.normal(0, 0.002))}, t)
    m.update({"A": 0.0, "B": 0.0, "ONEOFF": 0.5}, 40)
    stats = m.stats()
    assert stats["aligned_symbols"] == ["A", "B"]
    assert stats["observations"] == 41 and stats["max_abs_correlation"] > 0.8
    assert stats["symbols"] == ["A", "B", "ONEOFF"]
    warm = monitor(min_observations=10)
    for t in range(3):
        warm.update({"A": 0.01 * t, "B": -0.01 * t}, t)
    warm.update({"C": 0.0}, 3)
    assert (warm.stats()["aligned_symbols"], warm.stats()["observations"]) == (["A", "B"], 3)


def test_ledoit_wolf_builds_no_n_by_p_by_p_array() -> None:
    """512 symbols x 120 rows: peak traced memory stays far below the 250 MB an
    n x p x p outer-product array would take."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 512))
    tracemalloc.start()
    try:
        r, delta = ledoit_wolf_correlation(x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 30e6, peak
    assert r.shape == (512, 512) and 0.0 <= delta <= 1.0


def test_caps_are_validated_together() -> None:
    """max_symbols_per_row above max_symbols is a config error naming both keys."""
    from himari_l3 import ConfigError

    with pytest.raises(ConfigError, match="max_symbols_per_row"):
        parse_config(CorrelationConfig, {"max_symbols_per_row": 600, "max_symbols": 500})


def test_export_restore_keeps_the_symbol_counts() -> None:
    """A restored monitor enforces the window cap on the symbols it restored."""
    m = monitor(max_symbols_per_row=2, max_symbols=2)
    m.update({"A": 0.0, "B": 0.0}, 1)
    other = monitor(max_symbols_per_row=2, max_symbols=2)
    other.restore_state(m.export_state())
    with pytest.raises(InvalidReturnsException):
        other.update({"C": 0.0}, 2)
    other.update({"A": 0.01}, 2)
    assert other.symbols == ["A", "B"]


def test_caches_do_not_grow_with_the_symbol_sets_batches_name() -> None:
    """Without returns rows nothing invalidates the matrices cached per symbol set: 600
    batches over never-repeated symbol pairs left 600 cached identity matrices (a leak keyed
    by the caller's ids, ~0.1 KB each, found by bench_learned_state). Now at most 256."""
    from conftest import make_cascade, make_signal
    from himari_l3 import ManualClock
    from himari_l3.phase2 import Layer3Phase2Portfolio

    p = Layer3Phase2Portfolio(enable_metrics=False, clock=ManualClock())
    for i in range(600):
        syms = [f"A{i}", f"B{i}"]
        p.process_multi_strategy_signals(
            [make_signal(strategy_id="m", symbol=s) for s in syms], make_cascade(),
            dict.fromkeys(syms, 100.0))
    monitor = p.correlations
    assert len(monitor._cache) <= 256
    assert len(monitor._derived_cache) <= 256 and len(monitor._vol_cache) <= 256
