"""One contract test over every declared stage: Phase 1's sizing stages and Phase 2's limits
(which are also the book's whole-book limits, applied beside standing-target commitments).

A new stage or limit added to a declared list is covered here without a new test: it must
report itself under its own name, keep sizes finite and non-negative, name limits and reasons
from the shared vocabulary, and (limits) only ever shrink contributions and commitments,
never flip them.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import cascade_indicators, make_engine, valid_signals
from himari_l3.config.schema import SizingConfig
from himari_l3.phase1 import PHASE1_STAGE_ORDER
from himari_l3.phase2 import Layer3Phase2Portfolio
from himari_l3.portfolio.constraints import (
    ConstraintResult,
    LimitContext,
    SymbolBounds,
    run_limits,
)
from himari_l3.sizing.stages import SizingContext
from himari_l3.trace import LimitName, ReasonCode, StageName, StageResult

SETTINGS = settings(max_examples=150, deadline=None)


def test_phase1_declares_every_stage_once_in_order() -> None:
    """The declared list is the documented order, each stage named by the shared enum."""
    engine = make_engine()
    assert tuple(s.name for s in engine.stages) == PHASE1_STAGE_ORDER
    assert set(PHASE1_STAGE_ORDER) == set(StageName)


@SETTINGS
@given(signal=valid_signals(), cascade=cascade_indicators(),
       price=st.floats(1e-4, 1e6), held=st.floats(-1e5, 1e5),
       allow_short=st.booleans())
def test_every_phase1_stage_meets_the_contract(signal: Any, cascade: Any, price: float,
                                               held: float, allow_short: bool) -> None:
    """Each stage: its own name, finite non-negative size it also leaves in the context,
    a finite multiplier >= 0, a LimitName and ReasonCodes."""
    engine = make_engine(allow_short=allow_short)
    ctx = SizingContext(signal, cascade, price, engine.portfolio_value, held, True,
                        engine.config)
    for stage in engine.stages:
        result = stage.apply(ctx)
        assert isinstance(result, StageResult)
        assert result.stage is stage.name
        assert math.isfinite(result.size_usd) and result.size_usd >= 0.0
        assert result.size_usd == ctx.size
        assert math.isfinite(result.multiplier) and result.multiplier >= 0.0
        assert isinstance(result.binding, LimitName)
        assert all(isinstance(r, ReasonCode) for r in result.reasons)
    assert math.isfinite(ctx.signed_usd)


contributions = st.dictionaries(
    st.sampled_from(["a", "b", "c"]),
    st.dictionaries(st.sampled_from(["X", "Y", "Z"]),
                    st.floats(-5e4, 5e4, allow_nan=False), min_size=1),
    min_size=1)


commitments = st.one_of(st.none(), st.dictionaries(
    st.sampled_from(["a", "b", "d"]),
    st.dictionaries(st.sampled_from(["X", "W"]), st.floats(-8e4, 8e4, allow_nan=False),
                    min_size=1),
    max_size=3))


@SETTINGS
@given(contrib=contributions, committed=commitments, data=st.data())
def test_every_phase2_limit_meets_the_contract(contrib: dict[str, dict[str, float]],
                                               committed: dict[str, dict[str, float]] | None,
                                               data: st.DataObject) -> None:
    """Each limit: its own name, factors in [0, 1], contributions and commitments only
    shrink (never flip, never grow), and every symbol it says it cut is named in the
    binding map."""
    p = Layer3Phase2Portfolio(100_000.0, enable_metrics=False, allow_short=True)
    symbols = sorted({s for row in contrib.values() for s in row})
    bounds = {s: SymbolBounds(data.draw(st.floats(0.0, 2e4)), data.draw(st.floats(0.0, 2e4)),
                              1.0, data.draw(st.booleans())) for s in symbols}
    ctx = LimitContext(contrib, symbols, p.portfolio_value, bounds,
                       p.config.max_position_pct * p.portfolio_value, committed)
    names = {limit.name for limit in p.limits}
    assert {LimitName.NET, LimitName.LEVERAGE} <= names  # the book's caps are declared
    for limit in p.limits:
        before = {s: dict(row) for s, row in ctx.contrib.items()}
        held = {s: dict(row) for s, row in ctx.committed.items()}
        result = limit.apply(ctx)
        assert isinstance(result, ConstraintResult)
        assert result.name is limit.name and isinstance(result.name, LimitName)
        assert all(0.0 <= f <= 1.0 for f in result.factors.values())
        for rows, old_rows in ((ctx.contrib, before), (ctx.committed, held)):
            for strat, row in rows.items():
                for sym, usd in row.items():
                    old = old_rows[strat][sym]
                    assert abs(usd) <= abs(old) and usd * old >= 0.0
        assert all(0.0 <= f <= 1.0 for fs in ctx.committed_factors.values()
                   for f in fs.values())
        assert set(result.bound) <= set(ctx.tight)


caps = st.fixed_dictionaries({
    "max_position_pct": st.floats(0.01, 1.0), "max_strategy_pct": st.floats(0.01, 1.0),
    "max_portfolio_pct": st.floats(0.01, 1.0), "max_net_pct": st.floats(0.01, 1.0),
    "max_leverage": st.floats(0.01, 2.0)})


@SETTINGS
@given(contrib=contributions, committed=commitments, limits=caps)
def test_limits_hold_over_commitments_plus_batch(contrib: dict[str, dict[str, float]],
                                                committed: dict[str, dict[str, float]] | None,
                                                limits: dict[str, float]) -> None:
    """After the declared limits, every cap holds over commitments plus batch (whatever
    the commitments were: they are scaled first when they breach a cap alone)."""
    from himari_l3.config.schema import PortfolioConfig

    p = Layer3Phase2Portfolio(100_000.0, enable_metrics=False, allow_short=True,
                              config=PortfolioConfig(**limits),
                              sizing_config=SizingConfig.model_validate(
                                  {"limits": {"max_position_pct": limits["max_position_pct"]}}))
    symbols = sorted({s for row in contrib.values() for s in row})
    bounds = {s: SymbolBounds(1e9, 1e9, 1.0, False) for s in symbols}
    pv, cfg = p.portfolio_value, p.config
    out = run_limits(p.limits, contrib, symbols, pv, bounds, cfg.max_position_pct * pv,
                     committed)
    merged: dict[str, dict[str, float]] = {s: dict(r) for s, r in out.committed.items()}
    for strat, row in out.contrib.items():
        for sym, usd in row.items():
            merged.setdefault(strat, {})[sym] = merged.get(strat, {}).get(sym, 0.0) + usd
    net: dict[str, float] = {}
    for row in merged.values():
        for sym, usd in row.items():
            net[sym] = net.get(sym, 0.0) + usd
    tol = 1e-6
    assert all(abs(x) <= cfg.max_position_pct * pv + tol for x in net.values())
    assert all(sum(abs(x) for x in row.values()) <= cfg.max_strategy_pct * pv + tol
               for row in merged.values())
    gross = sum(abs(x) for x in net.values())
    assert gross <= min(cfg.max_portfolio_pct, cfg.max_leverage) * pv + tol
    assert abs(sum(net.values())) <= cfg.max_net_pct * pv + tol
