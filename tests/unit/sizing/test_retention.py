"""Bounded learned state (issue 13): Phase 1 forgets its least recently used keys beyond
``sizing.retention``'s caps, deterministically, as part of its exported state."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import PRICE, make_cascade, make_engine, make_signal
from himari_l3 import ManualClock, MarketRegime
from himari_l3.config.schema import RetentionConfig, SizingConfig
from himari_l3.events import LearnedStateEvicted
from himari_l3.observers import RecordingObserver
from himari_l3.phase1 import STATE_DETAIL_KEYS, Layer3Phase1
from himari_l3.phase2 import Layer3Phase2Portfolio
from himari_l3.sizing.retention import RecencyIndex


def _capped(pairs: int = 8, strategies: int = 4, symbols: int = 5) -> SizingConfig:
    return SizingConfig(retention=RetentionConfig(
        max_strategy_symbols=pairs, max_strategies=strategies, max_symbols=symbols))


def _sizes(p: Layer3Phase1) -> tuple[int, int, int, int]:
    return (len(p.kelly.stats_), len(p._last_prediction), len(p.conformal.states_),
            len(p.regimes.states_))


def _churn(p: Layer3Phase1, n: int, start: int = 0) -> list[dict[str, Any]]:
    """Decide, then learn from, ``n`` new strategy x symbol keys (strategy i % 7 ...)."""
    out = []
    for i in range(start, start + n):
        sig = make_signal(strategy_id=f"s{i % 7}-{i // 7}", symbol=f"X{i % 11}-{i // 11}",
                          regime=MarketRegime.TRENDING_UP if i % 3 else MarketRegime.RANGING)
        d = p.calculate_position(sig, make_cascade(), PRICE).to_dict()
        d.pop("latency_ms")  # wall-clock time: the only field that may differ
        out.append(d)
        p.update_from_trade_result(sig.strategy_id, sig.symbol, 0.01 * ((i % 5) - 2))
    return out


def test_recency_index_evicts_least_recently_used_first() -> None:
    """A touch moves a key to the most recent end; eviction takes from the other end."""
    idx: RecencyIndex[str] = RecencyIndex()
    for k in "abcd":
        idx.touch(k)
    idx.touch("a")
    assert idx.in_order() == ["b", "c", "d", "a"]
    assert idx.recent(2) == ["a", "d"]
    assert idx.evict_beyond(2) == ["b", "c"]
    assert idx.in_order() == ["d", "a"] and len(idx) == 2 and "a" in idx
    assert idx.evict_beyond(5) == []


def test_learned_state_stays_within_the_caps_and_evictions_are_counted() -> None:
    """500 distinct keys against caps of 8 / 4 / 5: no learner ever holds more, and every
    forgotten key is reported in a LearnedStateEvicted event."""
    obs = RecordingObserver()
    p = Layer3Phase1(config=_capped(), enable_metrics=False, observer=obs,
                     clock=ManualClock())
    for start in range(0, 500, 50):
        _churn(p, 50, start)
        kelly, last, conformal, regimes = _sizes(p)
        assert kelly <= 8 and last <= 8 and conformal <= 4 and regimes <= 5
    evicted: dict[str, int] = {}
    for e in obs.events:
        if isinstance(e, LearnedStateEvicted):
            for name, n in e.counts:
                evicted[name] = evicted.get(name, 0) + n
    summary = p.get_state()["retention"]
    assert evicted == {"strategy_symbol": 492, "strategy": 496, "symbol": 495}
    assert {k: summary[k]["evicted"] for k in evicted} == evicted
    assert summary["strategy_symbol"] == {"keys": 8, "cap": 8, "evicted": 492}


def test_the_least_recently_used_key_is_forgotten_and_restarts_from_the_prior() -> None:
    """Keys used recently survive; a forgotten key decides exactly as a fresh engine."""
    p = Layer3Phase1(config=_capped(pairs=2, strategies=2, symbols=2),
                     enable_metrics=False, clock=ManualClock())
    a, b, c = (make_signal(strategy_id=s, symbol=y)
               for s, y in (("a", "A-USD"), ("b", "B-USD"), ("c", "C-USD")))
    for sig in (a, b):
        for r in (0.03, -0.01, 0.02):
            p.update_from_trade_result(sig.strategy_id, sig.symbol, r)
    p.calculate_position(a, make_cascade(), PRICE)  # a is now more recent than b
    p.calculate_position(c, make_cascade(), PRICE)  # c in: b (least recently used) out
    assert ("b", "B-USD") not in p.kelly.stats_ and "b" not in p.conformal.states_
    assert ("a", "A-USD") in p.kelly.stats_ and "a" in p.conformal.states_
    fresh = make_engine()
    assert (p.calculate_position(b, make_cascade(), PRICE).position_size_usd
            == fresh.calculate_position(b, make_cascade(), PRICE).position_size_usd)


def test_restore_then_continue_evicts_the_same_keys_as_the_live_engine() -> None:
    """Export mid-stream, restore into a fresh engine, run the same requests on both: the
    exports (recency order included) and every decision stay identical."""
    live = Layer3Phase1(config=_capped(), enable_metrics=False, clock=ManualClock())
    _churn(live, 120)
    state = json.loads(json.dumps(live.export_state()))
    restored = Layer3Phase1(config=_capped(), enable_metrics=False, clock=ManualClock())
    restored.restore_state(state)
    assert restored.export_state() == live.export_state()
    assert _churn(restored, 80, 120) == _churn(live, 80, 120)
    assert restored.export_state() == live.export_state()


def test_a_state_from_before_retention_restores_and_is_trimmed() -> None:
    """A state without the recency order (older snapshots) orders keys by name, and a state
    saved under larger caps is cut to the engine's caps at once."""
    big = make_engine()
    _churn(big, 40)
    state = big.export_state()
    del state["retention"]
    small = Layer3Phase1(config=_capped(), enable_metrics=False, clock=ManualClock())
    small.restore_state(state)
    kelly, last, conformal, regimes = _sizes(small)
    assert kelly <= 8 and last <= 8 and conformal <= 4 and regimes <= 5
    assert small.retention.pairs.in_order() == sorted(small.retention.pairs.in_order())


def test_a_lower_cap_on_reload_forgets_the_excess_at_once() -> None:
    """apply_config with smaller caps trims immediately (a journaled config change, so a
    replay trims at the same point)."""
    p = make_engine()
    _churn(p, 30)
    assert _sizes(p)[0] == 30
    p.apply_config(_capped(pairs=3, strategies=2, symbols=1))
    assert _sizes(p) == (3, 3, 2, 1)


def test_a_batch_larger_than_a_cap_keeps_its_keys_until_it_is_committed() -> None:
    """Phase 2 trims after the batch, never mid-batch: every signal of a 12-symbol batch
    is sized with its own regime state although the symbol cap is 5."""
    p2 = Layer3Phase2Portfolio(enable_metrics=False, sizing_config=_capped(),
                               clock=ManualClock())
    syms = [f"Y{i}-USD" for i in range(12)]
    sigs = [make_signal(strategy_id=f"s{i}", symbol=s) for i, s in enumerate(syms)]
    alloc = p2.process_multi_strategy_signals(sigs, make_cascade(),
                                              dict.fromkeys(syms, PRICE))
    assert sorted(alloc.allocations) == sorted(syms) and not alloc.rejected_signals
    assert all(d["size_usd"] > 0 for d in alloc.trace["signals"])
    # Symbols are observed in sorted order: the last five observed survive.
    assert sorted(p2.phase1.regimes.states_) == sorted(syms)[-5:]


def test_get_state_details_only_the_most_recently_used_keys() -> None:
    """get_state stays small whatever the number of keys: counts for all, details for the
    STATE_DETAIL_KEYS most recently used strategies and symbols."""
    p = make_engine()
    _churn(p, 300)
    st = p.get_state()
    assert st["conformal_strategies"] == len(p.conformal.states_) > STATE_DETAIL_KEYS
    assert st["regime_symbols"] == len(p.regimes.states_) > STATE_DETAIL_KEYS
    assert len(st["conformal"]) == STATE_DETAIL_KEYS == len(st["regimes"])
    assert len(json.dumps(st)) < 20_000


@pytest.mark.parametrize("field", ["max_strategy_symbols", "max_strategies", "max_symbols"])
def test_caps_must_be_positive(field: str) -> None:
    """A cap of 0 would forget every key at once: refused, naming the key."""
    with pytest.raises(ValueError, match=field):
        RetentionConfig(**{field: 0})


def test_default_caps_bound_a_stream_of_new_ids() -> None:
    """With the default caps, 10,500 never-repeated strategy and symbol ids leave at most
    10,000 Kelly posteriors and last predictions, 1,000 conformal windows and 2,000 regime
    states (before the caps: one of each per id, for ever)."""
    p = make_engine()
    for i in range(10_500):
        sig = make_signal(strategy_id=f"s{i}", symbol=f"Z{i}-USD")
        p.calculate_position(sig, make_cascade(), PRICE)
        p.update_from_trade_result(sig.strategy_id, sig.symbol, 0.01)
    kelly, last, conformal, regimes = _sizes(p)
    assert kelly <= 10_000 and last <= 10_000
    assert conformal <= 1_000 and regimes <= 2_000


def test_the_exported_state_stops_growing_at_the_caps() -> None:
    """A snapshot's size is bounded: after the caps fill, twice as many distinct ids leave
    the exported state the same size (it doubled before the caps)."""
    p = Layer3Phase1(config=_capped(pairs=40, strategies=10, symbols=20),
                     enable_metrics=False, clock=ManualClock())
    _churn(p, 300)
    first = len(json.dumps(p.export_state()))
    _churn(p, 300, 300)
    assert len(json.dumps(p.export_state())) <= first * 1.05
