"""One contract test over every declared stage: Phase 1's sizing stages and Phase 2's limits.

A new stage or limit added to a declared list is covered here without a new test: it must
report itself under its own name, keep sizes finite and non-negative, name limits and reasons
from the shared vocabulary, and (limits) only ever shrink contributions, never flip them.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import cascade_indicators, make_engine, valid_signals
from himari_l3.phase1 import PHASE1_STAGE_ORDER
from himari_l3.phase2 import Layer3Phase2Portfolio
from himari_l3.portfolio.constraints import ConstraintResult, LimitContext, SymbolBounds
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


@SETTINGS
@given(contrib=contributions, data=st.data())
def test_every_phase2_limit_meets_the_contract(contrib: dict[str, dict[str, float]],
                                               data: st.DataObject) -> None:
    """Each limit: its own name, factors in [0, 1], contributions only shrink (never flip,
    never grow), and every symbol it says it cut is named in the binding map."""
    p = Layer3Phase2Portfolio(100_000.0, enable_metrics=False, allow_short=True)
    symbols = sorted({s for row in contrib.values() for s in row})
    bounds = {s: SymbolBounds(data.draw(st.floats(0.0, 2e4)), data.draw(st.floats(0.0, 2e4)),
                              1.0, data.draw(st.booleans())) for s in symbols}
    ctx = LimitContext(contrib, symbols, p.portfolio_value, bounds,
                       p.config.max_position_pct * p.portfolio_value)
    for limit in p.limits:
        before = {s: dict(row) for s, row in ctx.contrib.items()}
        result = limit.apply(ctx)
        assert isinstance(result, ConstraintResult)
        assert result.name is limit.name and isinstance(result.name, LimitName)
        assert all(0.0 <= f <= 1.0 for f in result.factors.values())
        for strat, row in ctx.contrib.items():
            for sym, usd in row.items():
                old = before[strat][sym]
                assert abs(usd) <= abs(old) and usd * old >= 0.0
        assert set(result.bound) <= set(ctx.tight)
