"""Property tests of the fill model and simulator over random orders and observations:
never more than ordered, never more than the participation cap, prices always adverse,
limits and lot steps respected, and the same inputs always give the same fills (also across
an export/restore at any point)."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from himari_l3.config.schema import FillModelConfig
from himari_l3.fills import (
    FillModel,
    FillSimulator,
    OrderSide,
    Quote,
    SimFill,
    SimOrder,
    TimeInForce,
)

T0 = 1_700_000_000 * 10**9
SYMS = ("BTC", "ETH")

configs = st.builds(
    FillModelConfig,
    fee_bps=st.floats(0.0, 50.0), slippage_bps=st.floats(0.0, 20.0),
    impact_bps=st.floats(0.0, 100.0), impact_exponent=st.floats(0.1, 2.0),
    slippage_noise_bps=st.floats(0.0, 10.0), max_participation=st.floats(0.01, 1.0),
    latency_sec=st.sampled_from([0.0, 1.0, 30.0]), latency_bars=st.integers(0, 2),
    seed=st.integers(0, 10))
orders = st.builds(
    dict, symbol=st.sampled_from(SYMS), side=st.sampled_from(list(OrderSide)),
    quantity=st.floats(0.001, 1000.0), limit=st.one_of(st.none(), st.floats(50.0, 150.0)),
    tif=st.sampled_from(list(TimeInForce)))
quotes = st.builds(dict, symbol=st.sampled_from(SYMS), price=st.floats(50.0, 150.0),
                   volume=st.one_of(st.none(), st.floats(0.0, 5000.0)),
                   dt=st.integers(0, 20 * 10**9))
events = st.lists(st.one_of(st.tuples(st.just("order"), orders),
                            st.tuples(st.just("quote"), quotes)), max_size=40)


def floor_to(step: float) -> Any:
    """A venue grid of ``step`` (0: any quantity), rounding toward zero."""
    return lambda _, qty: math.floor(qty / step + 1e-9) * step if step else qty


def run(cfg: FillModelConfig, step: float, seq: list[tuple[str, dict[str, Any]]],
        split: int | None = None) -> list[SimFill]:
    """Play ``seq``; with ``split``, export after that many events and continue in a fresh
    simulator restored from the export."""
    sim = FillSimulator(FillModel(cfg), round_down=floor_to(step))
    now, fills, n = T0, [], 0
    for i, (kind, d) in enumerate(seq):
        if split is not None and i == split:
            twin = FillSimulator(FillModel(cfg), round_down=floor_to(step))
            twin.restore_state(sim.export_state())
            sim = twin
        if kind == "order":
            n += 1
            sim.submit(SimOrder(f"o{n}", d["symbol"], d["side"], d["quantity"], now,
                                d["limit"], False, d["tif"]))
        else:
            now += d["dt"]
            fills += sim.on_quote(Quote(d["symbol"], d["price"], now, d["volume"])).fills
    return fills


@settings(max_examples=200)
@given(configs, st.sampled_from([0.0, 0.001, 0.1]), events)
def test_fills_respect_every_bound(cfg: FillModelConfig, step: float,
                                   seq: list[tuple[str, dict[str, Any]]]) -> None:
    """Per order: filled <= ordered; each fill adverse, fee as configured, on the lot step,
    within the limit; per observation: at most the participation cap."""
    ordered = {f"o{i + 1}": d for i, d in enumerate(d for k, d in seq if k == "order")}
    fills = run(cfg, step, seq)
    filled: dict[str, float] = {}
    per_obs: dict[tuple[str, int], float] = {}
    volume_at: dict[tuple[str, int], float | None] = {}
    now = T0
    for kind, d in seq:
        if kind == "quote":
            now += d["dt"]
            volume_at[(d["symbol"], now)] = d["volume"]
    for f in fills:
        o = ordered[f.client_order_id]
        filled[f.client_order_id] = filled.get(f.client_order_id, 0.0) + f.quantity
        assert f.quantity > 0 and math.isfinite(f.price) and f.fee >= 0
        assert math.isclose(f.fee, cfg.fee_bps / 1e4 * f.quantity * f.price, rel_tol=1e-12,
                            abs_tol=1e-300)
        assert (f.price >= f.reference_price if o["side"] is OrderSide.BUY
                else f.price <= f.reference_price)
        if o["limit"] is not None:
            assert (f.price <= o["limit"] if o["side"] is OrderSide.BUY
                    else f.price >= o["limit"])
        if step and not f.done:
            assert abs(f.quantity / step - round(f.quantity / step)) < 1e-6  # a partial
        key = (f.symbol, f.timestamp_ns)
        per_obs[key] = per_obs.get(key, 0.0) + f.quantity
    for coid, total in filled.items():
        assert total <= ordered[coid]["quantity"] * (1 + 1e-9)
    for key, total in per_obs.items():
        vol = volume_at.get(key)
        if vol is not None:
            assert total <= cfg.max_participation * vol * (1 + 1e-9) + 1e-12


@settings(max_examples=100)
@given(configs, st.sampled_from([0.0, 0.01]), events, st.integers(0, 40))
def test_same_inputs_same_fills_across_an_export_restore(
        cfg: FillModelConfig, step: float, seq: list[tuple[str, dict[str, Any]]],
        split: int) -> None:
    """Deterministic: a second run, and a run restored from an export mid-way, give the
    same fills bit for bit."""
    first = run(cfg, step, seq)
    assert run(cfg, step, seq) == first
    assert run(cfg, step, seq, split=min(split, len(seq))) == first
